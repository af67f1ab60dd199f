//! The echo service's per-instance dashboard: one self-contained HTML5 page (inline CSS, no
//! external assets, since a platform's users may have no internet). Every value placed in
//! it is HTML-escaped.

use crate::echo_service::Instance;
use crate::http::html_escape;

/// The page for `instance_id`.
pub fn render(instance_id: &str, instance: &Instance) -> String {
    let (service, plan) = match &instance.attributes {
        Some(attributes) => (attributes.service_id.as_str(), attributes.plan_id.as_str()),
        None => ("(not recorded)", "(not recorded)"),
    };
    let bindings: String = if instance.bindings.is_empty() {
        "<li class=\"none\">no bindings</li>".to_string()
    } else {
        instance
            .bindings
            .keys()
            .map(|binding_id| format!("<li><code>{}</code></li>", html_escape(binding_id)))
            .collect()
    };
    let messages: String = if instance.recent_messages.is_empty() {
        "<li class=\"none\">no messages yet</li>".to_string()
    } else {
        instance
            .recent_messages
            .iter()
            .rev()
            .map(|message| format!("<li>{}</li>", html_escape(message)))
            .collect()
    };
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Echo service: {id}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 0 auto; max-width: 44rem; padding: 1rem; color: #1d2430; background: #f6f7f9; }}
h1 {{ font-size: 1.4rem; overflow-wrap: anywhere; }}
section {{ background: #fff; border-radius: .5rem; padding: .5rem 1rem; margin-bottom: 1rem; box-shadow: 0 1px 2px rgba(0,0,0,.08); }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; padding: .35rem .5rem; border-bottom: 1px solid #e3e6ea; overflow-wrap: anywhere; }}
th {{ width: 35%; color: #566070; font-weight: 600; }}
ul {{ padding-left: 1.2rem; }}
li {{ margin: .2rem 0; overflow-wrap: anywhere; }}
.none {{ color: #8a93a0; list-style: none; margin-left: -1.2rem; }}
</style>
</head>
<body>
<h1>Echo service instance <code>{id}</code></h1>
<section>
<table>
<tr><th>Instance id</th><td><code>{id}</code></td></tr>
<tr><th>Service</th><td>{service}</td></tr>
<tr><th>Plan</th><td>{plan}</td></tr>
<tr><th>Bindings</th><td>{binding_count}</td></tr>
<tr><th>Messages</th><td>{message_count}</td></tr>
</table>
</section>
<section>
<h2>Bindings</h2>
<ul>{bindings}</ul>
</section>
<section>
<h2>Recent messages</h2>
<ul>{messages}</ul>
</section>
</body>
</html>
"#,
        id = html_escape(instance_id),
        service = html_escape(service),
        plan = html_escape(plan),
        binding_count = instance.bindings.len(),
        message_count = instance.message_count,
    )
}
