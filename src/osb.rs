//! Names of the Open Service Broker API that more than its request path needs: the headers
//! a platform sends, which the broker checks (`broker.rs`) and the conversation page shows
//! (`observer.rs`), and which paths are the API's. They sit here, below both, so that
//! neither file imports the other. (The request identity's header is forwarded to the echo
//! service too, so it is part of the API both share: `echo::api::REQUEST_IDENTITY_HEADER`.)

use crate::http::HttpRequest;

/// `X-Broker-API-Version: MAJOR.MINOR`: the API version a request speaks (spec, "API
/// Version Header").
pub const VERSION_HEADER: &str = "X-Broker-API-Version";

/// `X-Broker-API-Originating-Identity: PLATFORM BASE64(JSON)`: who on the platform asked
/// (spec, "Originating Identity").
pub const ORIGINATING_IDENTITY_HEADER: &str = "X-Broker-API-Originating-Identity";

/// Whether `request` is one of the OSB API's calls (its paths start with `/v2`), to which
/// the checks of the API version and the originating identity apply.
pub fn is_osb_call(request: &HttpRequest) -> bool {
    request.path() == "/v2" || request.path().starts_with("/v2/")
}
