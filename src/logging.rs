//! Log output: one line per event, as text or as JSON, on standard error.

use std::io::Write;
use std::str::FromStr;

use crate::text::escape_untrusted;

/// Output format of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The name used on the command line and in the settings file.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl FromStr for LogFormat {
    type Err = ();

    fn from_str(text: &str) -> Result<LogFormat, ()> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(()),
        }
    }
}

/// Sets up the global logger once. `RUST_LOG`, when set, overrides the level. Under
/// systemd (`JOURNAL_STREAM` names our standard error) text lines carry sd-daemon(3)
/// priority prefixes and no timestamp, so `journalctl -p warning` filters them.
pub fn init(level: log::LevelFilter, format: LogFormat) {
    let mut builder = env_logger::Builder::new();
    builder.filter_level(level);
    if let Ok(spec) = std::env::var("RUST_LOG") {
        builder.parse_filters(&spec);
    }
    let journal = stderr_is_journal();
    match format {
        LogFormat::Text if journal => builder.format(|buf, record| {
            writeln!(
                buf,
                "<{}>{:<5} {}",
                priority(record.level()),
                record.level(),
                escape_untrusted(&record.args().to_string())
            )
        }),
        LogFormat::Text => builder.format(|buf, record| {
            writeln!(
                buf,
                "{} {:<5} {}",
                buf.timestamp_millis(),
                record.level(),
                escape_untrusted(&record.args().to_string())
            )
        }),
        LogFormat::Json => builder.format(|buf, record| {
            let fields = json_fields(record.key_values());
            writeln!(
                buf,
                "{{\"ts\":\"{}\",\"level\":\"{}\",\"thread\":{},\"msg\":{}{fields}}}",
                buf.timestamp_millis(),
                record.level().as_str().to_lowercase(),
                json_string(std::thread::current().name().unwrap_or("?")),
                json_string(&record.args().to_string())
            )
        }),
    };
    // A second init (tests) keeps the first logger.
    let _ = builder.try_init();
}

/// The syslog priority of a level, as sd-daemon(3) prefixes want it.
fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// True when systemd connected our standard error to the journal: `JOURNAL_STREAM` holds
/// `DEVICE:INODE` of that stream (checked, since a child of a service inherits the variable
/// with some other standard error).
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    stream == format!("{}:{}", meta.dev(), meta.ino())
}

/// The structured fields of a record (`log::info!(conn = 7, ...; "...")`) as `,"key":value`
/// pairs: numbers and booleans as JSON numbers and booleans, everything else as strings.
fn json_fields(source: &dyn log::kv::Source) -> String {
    struct Collect(String);
    impl<'kvs> log::kv::VisitSource<'kvs> for Collect {
        fn visit_pair(
            &mut self,
            key: log::kv::Key<'kvs>,
            value: log::kv::Value<'kvs>,
        ) -> Result<(), log::kv::Error> {
            let rendered = if let Some(n) = value.to_u64() {
                n.to_string()
            } else if let Some(n) = value.to_i64() {
                n.to_string()
            } else if let Some(x) = value.to_f64().filter(|x| x.is_finite()) {
                format!("{x}")
            } else if let Some(b) = value.to_bool() {
                b.to_string()
            } else {
                json_string(&value.to_string())
            };
            self.0.push(',');
            self.0.push_str(&json_string(key.as_str()));
            self.0.push(':');
            self.0.push_str(&rendered);
            Ok(())
        }
    }
    let mut collect = Collect(String::new());
    let _ = source.visit(&mut collect);
    collect.0
}

/// A JSON string literal.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn fields_keep_their_json_types() {
        let pairs: [(&str, log::kv::Value); 4] = [
            ("conn", log::kv::Value::from(7u64)),
            ("duration_s", log::kv::Value::from(0.25f64)),
            ("reason", log::kv::Value::from("completed")),
            ("ok", log::kv::Value::from(true)),
        ];
        assert_eq!(
            super::json_fields(&pairs),
            ",\"conn\":7,\"duration_s\":0.25,\"reason\":\"completed\",\"ok\":true"
        );
    }

    #[test]
    fn json_escapes() {
        assert_eq!(
            super::json_string("a\"b\\c\nd\u{1}"),
            "\"a\\\"b\\\\c\\nd\\u0001\""
        );
    }
}
