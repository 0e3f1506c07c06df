//! Server-rendered HTML for the web UIs: one stylesheet, escaping, tables,
//! progress bars. No scripts: pages are plain documents a browser, `curl`
//! or a screen reader reads the same way.

/// Escapes text for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#222;background:#fafafa}\
header{background:#2b2d42;color:#fff;padding:10px 24px;display:flex;gap:24px;align-items:baseline}\
header a{color:#e6e6ff;text-decoration:none;margin-right:16px}header .brand{font-weight:700;font-size:1.3em;color:#ff8c42}\
main{padding:12px 24px}h1{font-size:1.4em}h2{font-size:1.15em;margin-top:28px}\
table{border-collapse:collapse;width:100%;background:#fff;margin:8px 0}\
th,td{border:1px solid #ddd;padding:5px 8px;text-align:left;font-size:.92em;vertical-align:top}\
th{background:#eef0f5}tr:nth-child(even) td{background:#fbfbfd}\
.bar{position:relative;background:#e3e7ee;border-radius:3px;height:18px;min-width:160px}\
.bar .done{position:absolute;left:0;top:0;bottom:0;background:#7cc47c;border-radius:3px}\
.bar .run{position:absolute;top:0;bottom:0;background:#8ab6e8}\
.bar span{position:relative;padding-left:6px;font-size:.85em;line-height:18px}\
.ok{color:#2e7d32}.bad{color:#c62828}.muted{color:#777}dl{display:grid;grid-template-columns:max-content auto;gap:4px 16px}dt{font-weight:600}";

/// A full page: title, navigation links, body.
pub fn page(title: &str, nav: &[(&str, &str)], body: &str) -> String {
    let links: String = nav
        .iter()
        .map(|(href, label)| format!("<a href=\"{}\">{}</a>", esc(href), esc(label)))
        .collect();
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>{STYLE}</style></head><body><header><span class=\"brand\">Ember</span>\
         <nav>{links}</nav></header><main><h1>{t}</h1>{body}</main></body></html>",
        t = esc(title)
    )
}

/// A table: header cells (escaped) and rows of cells given as HTML.
pub fn table(id: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("<table id=\"{}\"><thead><tr>", esc(id));
    for h in headers {
        out.push_str(&format!("<th>{}</th>", esc(h)));
    }
    out.push_str("</tr></thead><tbody>");
    if rows.is_empty() {
        out.push_str(&format!(
            "<tr><td colspan=\"{}\" class=\"muted\">none</td></tr>",
            headers.len().max(1)
        ));
    }
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            out.push_str(&format!("<td>{c}</td>"));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// A progress bar of `done` and `running` out of `total` tasks.
pub fn progress(done: usize, running: usize, total: usize, failed: usize) -> String {
    let pct = |n: usize| {
        if total == 0 {
            0.0
        } else {
            100.0 * n as f64 / total as f64
        }
    };
    let failed = if failed > 0 {
        format!(" ({failed} failed)")
    } else {
        String::new()
    };
    format!(
        "<div class=\"bar\"><div class=\"done\" style=\"width:{:.1}%\"></div>\
         <div class=\"run\" style=\"left:{:.1}%;width:{:.1}%\"></div>\
         <span>{done}/{total}{}{failed}</span></div>",
        pct(done),
        pct(done),
        pct(running),
        if running > 0 {
            format!(" ({running} running)")
        } else {
            String::new()
        }
    )
}

/// A link.
pub fn link(href: &str, text: &str) -> String {
    format!("<a href=\"{}\">{}</a>", esc(href), esc(text))
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn date(ms: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(ms / 1000);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

/// Milliseconds since the epoch in Spark's API form
/// (`2024-01-02T03:04:05.678GMT`).
pub fn api_date(ms: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(ms / 1000);
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}GMT",
        ms % 1000
    )
}

fn civil(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// A duration in milliseconds, readable (`850 ms`, `12.3 s`, `4.1 min`).
pub fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{:.1} min", ms as f64 / 60_000.0)
    } else {
        format!("{:.1} h", ms as f64 / 3_600_000.0)
    }
}

/// Bytes, readable (`512.0 MiB`).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(date(0), "1970-01-01 00:00:00");
        assert_eq!(api_date(951_782_400_123), "2000-02-29T00:00:00.123GMT");
        assert_eq!(date(1_700_000_000_000), "2023-11-14 22:13:20");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
