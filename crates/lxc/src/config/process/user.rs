//! process.user: uid, gid and additional gids go to the init as they are;
//! the rest is checked here.
use oci_spec::runtime::Process;

use crate::config::TranslateError;

pub(super) fn check(process: &Process) -> Result<(), TranslateError> {
    let user = process.user();
    if let Some(name) = user.username() {
        return Err(TranslateError::unsupported(
            "process.user.username",
            name.escape_debug(),
            "username is for Windows containers",
            "use process.user.uid/gid",
        ));
    }
    if let Some(umask) = user.umask() {
        if umask > 0o777 {
            return Err(TranslateError::invalid(
                "process.user.umask",
                format!("{umask:o}"),
                "a umask has at most 9 permission bits",
                "use a value <= 0777",
            ));
        }
    }
    Ok(())
}
