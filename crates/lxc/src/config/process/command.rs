//! What the process runs: process.args, env and cwd; and the process
//! fields about how it is scheduled, which nothing here can honour.
use oci_spec::runtime::Process;

use super::no_nul;
use crate::config::{check_abs_path, TranslateError};

/// The checked process.args, process.env and process.cwd.
pub(super) struct Command {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
}

pub(super) fn translate(process: &Process) -> Result<Command, TranslateError> {
    if let Some(cl) = process.command_line() {
        return Err(TranslateError::unsupported(
            "process.commandLine",
            cl.escape_debug(),
            "commandLine is for Windows containers",
            "use process.args",
        ));
    }
    let args: Vec<String> = process.args().clone().unwrap_or_default();
    if args.is_empty() || args[0].is_empty() {
        return Err(TranslateError::missing(
            "process.args",
            "give at least the program to run as process.args[0]",
        ));
    }
    for (i, a) in args.iter().enumerate() {
        no_nul(&format!("process.args[{i}]"), a)?;
    }
    let env: Vec<String> = process.env().clone().unwrap_or_default();
    for (i, e) in env.iter().enumerate() {
        no_nul(&format!("process.env[{i}]"), e)?;
        if !e.contains('=') || e.starts_with('=') {
            return Err(TranslateError::invalid(
                format!("process.env[{i}]"),
                e.escape_debug(),
                "must be NAME=value",
                "fix the environment entry",
            ));
        }
    }
    let cwd = process.cwd().to_string_lossy().to_string();
    check_abs_path("process.cwd", &cwd)?;
    Ok(Command { args, env, cwd })
}

/// process.ioPriority, scheduler and execCPUAffinity: errors.
pub(super) fn scheduling(process: &Process) -> Result<(), TranslateError> {
    if process.io_priority().is_some() {
        return Err(TranslateError::unsupported(
            "process.ioPriority",
            "{...}",
            "neither LXC 5.0 nor our init sets the I/O priority",
            "remove process.ioPriority",
        ));
    }
    if process.scheduler().is_some() {
        return Err(TranslateError::unsupported(
            "process.scheduler",
            "{...}",
            "neither LXC 5.0 nor our init sets the scheduling policy",
            "remove process.scheduler",
        ));
    }
    if process.exec_cpu_affinity().is_some() {
        return Err(TranslateError::unsupported(
            "process.execCPUAffinity",
            "{...}",
            "neither LXC 5.0 nor our init sets CPU affinity",
            "remove process.execCPUAffinity (linux.resources.cpu.cpus limits the CPUs)",
        ));
    }
    Ok(())
}
