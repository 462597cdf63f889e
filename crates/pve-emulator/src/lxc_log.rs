//! LXC's log file, read back for a task log: a failed `lxc-start` leaves
//! its reasons there as ERROR lines, which a Proxmox node shows in the
//! start task's log in LXC's short form (`function: line message`).

use std::path::Path;

/// The ERROR lines of an LXC log file, shortened as LXC prints them on a
/// terminal; empty when the file is missing.
pub fn error_lines(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().filter_map(short_form).collect()
}

/// `lxc-start 100 20260101.123 ERROR start - ../src/lxc/start.c:__lxc_start:2107 - msg`
/// becomes `__lxc_start: 2107 msg`; other levels give None.
fn short_form(line: &str) -> Option<String> {
    let (_, rest) = line.split_once(" ERROR ")?;
    // "   start - FILE:FUNC:LINE - MESSAGE"
    let mut parts = rest.trim_start().splitn(3, " - ");
    let (_category, location, message) = (parts.next()?, parts.next(), parts.next());
    match (
        location.map(|l| l.rsplitn(3, ':').collect::<Vec<_>>()),
        message,
    ) {
        (Some(loc), Some(msg)) if loc.len() == 3 => {
            Some(format!("{}: {} {}", loc[1], loc[0], msg.trim()))
        }
        _ => Some(rest.trim().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_errors_in_short_form() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("lxc.log");
        std::fs::write(
            &f,
            "lxc-start 100 20261201000000.100 INFO     confile - ../src/lxc/confile.c:set_config_idmaps:2273 - Read uid map\n\
             lxc-start 100 20261201000000.200 ERROR    start - ../src/lxc/start.c:__lxc_start:2107 - Failed to spawn container \"100\"\n\
             lxc-start 100 20261201000000.300 ERROR    lxc_start - ../src/lxc/tools/lxc_start.c:main:306 - The container failed to start\n\
             lxc-start 100 20261201000000.400 ERROR    odd line without location\n",
        )
        .unwrap();
        assert_eq!(
            error_lines(&f),
            [
                "__lxc_start: 2107 Failed to spawn container \"100\"",
                "main: 306 The container failed to start",
                "odd line without location",
            ]
        );
        assert!(error_lines(&d.path().join("missing")).is_empty());
    }
}
