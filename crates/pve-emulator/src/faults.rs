//! Fault injection rules (see the contract): matched on method and the path
//! after /api2/json, applied after `after` requests, `count` times, at `rate`.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default = "star")]
    pub method: String,
    #[serde(default = "any_path")]
    pub path: String,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
    #[serde(default)]
    pub after: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(default = "one")]
    pub rate: f64,
    #[serde(default)]
    pub hits: u64,
    #[serde(skip)]
    seen: u64,
    #[serde(skip)]
    re: Option<regex::Regex>,
}

fn star() -> String {
    "*".into()
}
fn any_path() -> String {
    ".*".into()
}
fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Error,
    Drop,
    Latency,
    FailTask,
    Lock,
}

/// What a request meets.
#[derive(Debug, Default)]
pub struct Effect {
    pub latency_ms: u64,
    pub error: Option<(u16, String)>,
    pub drop: bool,
    pub fail_task: Option<String>,
}

#[derive(Default)]
pub struct Faults {
    rules: Mutex<Vec<Rule>>,
}

fn random_unit() -> f64 {
    let mut b = [0u8; 4];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u32::from_le_bytes(b) as f64 / (u32::MAX as f64 + 1.0)
}

impl Rule {
    pub fn compile(mut self) -> Result<Rule, String> {
        self.re = Some(
            regex::Regex::new(&self.path)
                .map_err(|e| format!("path regex '{}': {e}", self.path))?,
        );
        if !(0.0..=1.0).contains(&self.rate) {
            return Err(format!("rate {} is not within 0..1", self.rate));
        }
        if self.method != "*" && !["GET", "POST", "PUT", "DELETE"].contains(&self.method.as_str()) {
            return Err(format!(
                "method '{}' is not GET, POST, PUT, DELETE or *",
                self.method
            ));
        }
        self.hits = 0;
        self.seen = 0;
        Ok(self)
    }
}

impl Faults {
    pub fn add(&self, rules: Vec<Rule>) -> Result<(), String> {
        let compiled: Vec<Rule> = rules
            .into_iter()
            .map(Rule::compile)
            .collect::<Result<_, _>>()?;
        self.rules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(compiled);
        Ok(())
    }
    pub fn clear(&self) {
        self.rules.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
    pub fn list(&self) -> Vec<Rule> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn check(&self, method: &str, path: &str) -> Effect {
        let mut eff = Effect::default();
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        for r in rules.iter_mut() {
            if r.method != "*" && r.method != method {
                continue;
            }
            if !r.re.as_ref().is_some_and(|re| re.is_match(path)) {
                continue;
            }
            r.seen += 1;
            if r.seen <= r.after || r.count.is_some_and(|c| r.hits >= c) {
                continue;
            }
            if r.rate < 1.0 && random_unit() >= r.rate {
                continue;
            }
            let taken = match r.action {
                Action::Latency => {
                    eff.latency_ms += r.ms.unwrap_or(0);
                    true
                }
                Action::Error if eff.error.is_none() && !eff.drop => {
                    eff.error = Some((
                        r.status.unwrap_or(500),
                        r.message.clone().unwrap_or_else(|| "injected fault".into()),
                    ));
                    true
                }
                Action::Lock if eff.error.is_none() && !eff.drop => {
                    eff.error = Some((
                        500,
                        format!(
                            "CT is locked ({})",
                            r.message.as_deref().unwrap_or("backup")
                        ),
                    ));
                    true
                }
                Action::Drop if eff.error.is_none() => {
                    eff.drop = true;
                    true
                }
                Action::FailTask if eff.fail_task.is_none() => {
                    eff.fail_task =
                        Some(r.message.clone().unwrap_or_else(|| "injected fault".into()));
                    true
                }
                _ => false,
            };
            if taken {
                r.hits += 1;
            }
        }
        eff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(j: &str) -> Rule {
        serde_json::from_str(j).unwrap()
    }

    #[test]
    fn after_count_and_method() {
        let f = Faults::default();
        f.add(vec![rule(r#"{"method":"GET","path":"^/version$","action":"error","status":503,"after":1,"count":2}"#)]).unwrap();
        assert!(f.check("GET", "/version").error.is_none());
        assert_eq!(
            f.check("GET", "/version").error,
            Some((503, "injected fault".into()))
        );
        assert!(f.check("POST", "/version").error.is_none());
        assert!(f.check("GET", "/version").error.is_some());
        assert!(f.check("GET", "/version").error.is_none());
        assert_eq!(f.list()[0].hits, 2);
        assert!(f
            .add(vec![rule(r#"{"path":"(","action":"drop"}"#)])
            .is_err());
        f.clear();
        assert!(f.list().is_empty());
    }
}
