//! process.rlimits (`lxc.prlimit.*`) and process.oomScoreAdj.
use oci_spec::runtime::{PosixRlimitType, Process};

use crate::config::{LxcConfig, TranslateError};

fn rlimit_name(t: PosixRlimitType) -> &'static str {
    match t {
        PosixRlimitType::RlimitCpu => "cpu",
        PosixRlimitType::RlimitFsize => "fsize",
        PosixRlimitType::RlimitData => "data",
        PosixRlimitType::RlimitStack => "stack",
        PosixRlimitType::RlimitCore => "core",
        PosixRlimitType::RlimitRss => "rss",
        PosixRlimitType::RlimitNproc => "nproc",
        PosixRlimitType::RlimitNofile => "nofile",
        PosixRlimitType::RlimitMemlock => "memlock",
        PosixRlimitType::RlimitAs => "as",
        PosixRlimitType::RlimitLocks => "locks",
        PosixRlimitType::RlimitSigpending => "sigpending",
        PosixRlimitType::RlimitMsgqueue => "msgqueue",
        PosixRlimitType::RlimitNice => "nice",
        PosixRlimitType::RlimitRtprio => "rtprio",
        PosixRlimitType::RlimitRttime => "rttime",
    }
}

fn rlimit_value(v: u64) -> String {
    if v == u64::MAX {
        "unlimited".to_string()
    } else {
        v.to_string()
    }
}

pub(super) fn translate(process: &Process, lxc: &mut LxcConfig) -> Result<(), TranslateError> {
    let mut seen = Vec::new();
    for (i, r) in process.rlimits().iter().flatten().enumerate() {
        let name = rlimit_name(r.typ());
        if seen.contains(&name) {
            return Err(TranslateError::invalid(
                format!("process.rlimits[{i}].type"),
                name,
                "rlimit listed twice",
                "list each rlimit once",
            ));
        }
        seen.push(name);
        if r.soft() > r.hard() {
            return Err(TranslateError::invalid(
                format!("process.rlimits[{i}]"),
                format!("soft={} hard={}", r.soft(), r.hard()),
                "soft limit above hard limit",
                "make soft <= hard",
            ));
        }
        lxc.push(
            &format!("lxc.prlimit.{name}"),
            format!("{}:{}", rlimit_value(r.soft()), rlimit_value(r.hard())),
        )?;
    }
    if let Some(adj) = process.oom_score_adj() {
        if !(-1000..=1000).contains(&adj) {
            return Err(TranslateError::invalid(
                "process.oomScoreAdj",
                adj,
                "out of range",
                "use a value between -1000 and 1000",
            ));
        }
        lxc.push("lxc.proc.oom_score_adj", adj.to_string())?;
    }
    Ok(())
}
