//! The echo service's per-instance dashboard: one self-contained HTML5 page (inline CSS, no
//! external assets, since a platform's users may have no internet). Every value placed in
//! it is HTML-escaped.
//!
//! The page is given a [`Dashboard`]: plain strings and counts, so it knows nothing of how
//! the service keeps its instances.

use crate::http::html_escape;

/// What the page shows of one instance.
#[derive(Debug, Clone)]
pub struct Dashboard<'a> {
    pub instance_id: &'a str,
    /// `None` when the instance's attributes were not recorded (the original echo service's).
    pub service_id: Option<&'a str>,
    pub plan_id: Option<&'a str>,
    pub binding_ids: Vec<&'a str>,
    /// The latest messages' previews, oldest first.
    pub recent_messages: Vec<&'a str>,
    /// Every message the instance echoed, not only the recent ones.
    pub message_count: u64,
}

/// The page for one instance.
pub fn render(dashboard: &Dashboard) -> String {
    let not_recorded = "(not recorded)";
    let service = dashboard.service_id.unwrap_or(not_recorded);
    let plan = dashboard.plan_id.unwrap_or(not_recorded);
    let bindings: String = if dashboard.binding_ids.is_empty() {
        "<li class=\"none\">no bindings</li>".to_string()
    } else {
        dashboard
            .binding_ids
            .iter()
            .map(|binding_id| format!("<li><code>{}</code></li>", html_escape(binding_id)))
            .collect()
    };
    let messages: String = if dashboard.recent_messages.is_empty() {
        "<li class=\"none\">no messages yet</li>".to_string()
    } else {
        dashboard
            .recent_messages
            .iter()
            .rev()
            .map(|message| format!("<li>{}</li>", html_escape(message)))
            .collect()
    };
    let body = format!(
        r#"<header>
<h1>Echo service instance</h1>
</header>
<section>
<table>
<tr><th scope="row">Instance id</th><td><code>{id}</code></td></tr>
<tr><th scope="row">Service</th><td>{service}</td></tr>
<tr><th scope="row">Plan</th><td>{plan}</td></tr>
<tr><th scope="row">Bindings</th><td>{binding_count}</td></tr>
<tr><th scope="row">Messages</th><td>{message_count}</td></tr>
</table>
</section>
<section>
<h2>Bindings</h2>
<ul>{bindings}</ul>
</section>
<section>
<h2>Recent messages, newest first</h2>
<ul>{messages}</ul>
</section>
<footer>Reload the page to see new messages.</footer>
"#,
        id = html_escape(dashboard.instance_id),
        service = html_escape(service),
        plan = html_escape(plan),
        binding_count = dashboard.binding_ids.len(),
        message_count = dashboard.message_count,
    );
    let title = format!("Echo service: {}", dashboard.instance_id);
    crate::http::html_document(&title, STYLE, &body)
}

/// The page's look: cards on a quiet background, in light and dark.
const STYLE: &str = "\
:root { --text: #1d2430; --muted: #566070; --faint: #8a93a0; --page: #f6f7f9; --card: #fff; --rule: #e3e6ea; }
@media (prefers-color-scheme: dark) {
  :root { --text: #e4e7ec; --muted: #a3acb9; --faint: #7d8694; --page: #14171c; --card: #1e232a; --rule: #2e343d; }
}
body { font-family: system-ui, sans-serif; line-height: 1.45; margin: 0 auto; max-width: 44rem; padding: 1rem; color: var(--text); background: var(--page); }
header { margin: .5rem 0 1rem; }
h1 { font-size: 1.4rem; margin: 0; }
h2 { font-size: 1.1rem; margin: .5rem 0; }
code { font-size: .9em; }
section { background: var(--card); border-radius: .5rem; padding: .5rem 1rem; margin-bottom: 1rem; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .35rem .5rem; border-bottom: 1px solid var(--rule); overflow-wrap: anywhere; }
tr:last-child th, tr:last-child td { border-bottom: 0; }
th { width: 35%; color: var(--muted); font-weight: 600; }
ul { padding-left: 1.2rem; }
li { margin: .3rem 0; overflow-wrap: anywhere; }
.none { color: var(--faint); list-style: none; margin-left: -1.2rem; }
footer { color: var(--faint); font-size: .85rem; }
";
