//! Logs as runc writes them. With `--log-format json` every line on `--log`
//! is logrus-shaped, `{"level":"error","msg":"...","time":"..."}`: the
//! containerd shim reads the last error line from there and shows it.
//! Text format without `--log` goes to stderr.
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

use crate::cli::{GlobalOpts, LogFormat};

/// Where log lines go; cheap to clone into the tracing layer.
pub struct Log {
    sink: Mutex<Option<File>>,
    json: bool,
}

impl Log {
    fn write(&self, level: &str, msg: &str) {
        let time = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let line = if self.json {
            let mut s = serde_json::json!({"level": level, "msg": msg, "time": time}).to_string();
            s.push('\n');
            s
        } else {
            format!("time=\"{time}\" level={level} msg={msg:?}\n")
        };
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        match sink.as_mut() {
            Some(f) => {
                let _ = f.write_all(line.as_bytes());
                // The shim reads the file right after we exit; also tell a
                // human at a terminal.
                if level == "error" && !self.json {
                    eprint!("{line}");
                }
            }
            None => eprint!("{line}"),
        }
    }

    /// The final error of a command: to the log, and to stderr where a
    /// human or the shim's captured output sees it.
    pub fn error(&self, msg: &str) {
        self.write("error", msg);
        if self.sink.lock().map(|s| s.is_some()).unwrap_or(false) && self.json {
            eprintln!("proxmox-lxcri: {msg}");
        }
    }
}

struct LogLayer(&'static Log);

struct MsgVisitor(String);
impl Visit for MsgVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        } else {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        } else {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }
}

impl<S: Subscriber> Layer<S> for LogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut v = MsgVisitor(String::new());
        event.record(&mut v);
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        self.0.write(level, &v.0);
    }
}

pub fn init(g: &GlobalOpts) -> anyhow::Result<&'static Log> {
    let sink = match &g.log {
        Some(p) if !p.as_os_str().is_empty() => Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
        ),
        _ => None,
    };
    let log: &'static Log = Box::leak(Box::new(Log {
        sink: Mutex::new(sink),
        json: g.log_format == LogFormat::Json,
    }));
    let max = if g.debug { Level::DEBUG } else { Level::WARN };
    let subscriber = tracing_subscriber::registry()
        .with(LogLayer(log).with_filter(tracing_subscriber::filter::LevelFilter::from_level(max)));
    let _ = tracing::subscriber::set_global_default(subscriber);
    Ok(log)
}
