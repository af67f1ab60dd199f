//! What a broker is made from: its catalog, the login a platform must send, and where the
//! echo service is and how to reach it (`main.rs` reads them from the environment).

use super::Broker;
use crate::catalog::Catalog;
use crate::echo_client::EchoClient;
use crate::observer::Observer;
use crate::settings::TlsRoots;

/// What the broker needs to run.
pub struct BrokerConfig {
    pub catalog: Catalog,
    /// The basic-auth user and password the platform must send (the broker's own login).
    pub login: (String, String),
    /// The echo service, e.g. `http://127.0.0.1:8090` (the original's `service_base`).
    pub service_base: String,
    /// The echo service's management login, if it has one.
    pub echo_login: Option<(String, String)>,
    /// The CAs an `https://` echo service's certificate must chain to.
    pub tls_roots: TlsRoots,
}

impl Broker {
    pub fn new(config: BrokerConfig) -> Broker {
        let mut catalog_json = config.catalog.to_json();
        // Ended like every other JSON answer (`HttpResponse::json`), here once for all.
        catalog_json.push(b'\n');
        Broker {
            observer: Observer::new(&catalog_json),
            catalog_json,
            catalog: config.catalog,
            login: config.login,
            echo: EchoClient::new(&config.service_base, config.echo_login, &config.tls_roots),
        }
    }
}
