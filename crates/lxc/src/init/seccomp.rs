//! `linux.seccomp` → a classic BPF program, loaded by the init right before
//! (or, without `noNewPrivileges`, before dropping privileges for) `execve`.
//!
//! The runtime calls [`compile`] at `create` time to reject bad profiles
//! before anything is started; the init compiles again and [`load`]s.
//!
//! # Semantics (and where they differ from runc/libseccomp)
//!
//! * Only the **native** ABI (x86_64) is filtered. `seccompiler` and the
//!   `syscalls` crate as configured here know only the native table, so
//!   `architectures` entries other than the native one (`SCMP_ARCH_X86`,
//!   `SCMP_ARCH_X32`, ...) are accepted but not filtered individually.
//!   Instead every syscall made through another ABI (i386 `int 0x80`, x32)
//!   gets the *default action* when that action denies (anything but
//!   `SCMP_ACT_ALLOW`/`SCMP_ACT_LOG`), else `SCMP_ACT_KILL_PROCESS`, so a
//!   foreign ABI can never be used to bypass the profile.
//! * Rules are matched in spec order, per syscall: the first entry whose
//!   argument conditions all match decides the action (conditions on one entry
//!   are ANDed, as in libseccomp). As runc does, an entry with several
//!   conditions on the *same* argument index is split into one rule per
//!   condition (ORed), because libseccomp cannot AND those.
//! * Syscall names unknown on this architecture are skipped silently, as
//!   runc/libseccomp do (profiles list syscalls of every arch).
//! * `SCMP_ACT_NOTIFY` needs `listenerPath` (a seccomp agent): the filter
//!   is then loaded with `SECCOMP_FILTER_FLAG_NEW_LISTENER` and the notify
//!   fd goes to the runtime, which hands it to the agent as runc does.
//! * Flags: `SECCOMP_FILTER_FLAG_TSYNC`, `_LOG`, `_SPEC_ALLOW` are passed to
//!   seccomp(2); `_WAIT_KILLABLE_RECV` is accepted and ignored.
//! * Errno values default to EPERM (`errnoRet`/`defaultErrnoRet` absent).
//! * Argument comparisons are 64-bit, as libseccomp does on 64-bit arches;
//!   `SCMP_CMP_MASKED_EQ` takes the mask from `value` and the datum from
//!   `valueTwo`.

use std::collections::BTreeMap;
use std::str::FromStr;

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction as Act, LinuxSeccompFilterFlag as Flag,
    LinuxSeccompOperator as Op,
};
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompRule,
};

/// What went wrong with a seccomp profile, naming the offending field.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("{field}: {msg}")]
    Invalid { field: String, msg: String },
    #[error(
        "linux.seccomp: the filter has {0} BPF instructions, more than the kernel's limit of 4096"
    )]
    TooLarge(usize),
    #[error("loading the seccomp filter: {0}")]
    Load(std::io::Error),
}

fn invalid(field: impl Into<String>, msg: impl Into<String>) -> SeccompError {
    SeccompError::Invalid {
        field: field.into(),
        msg: msg.into(),
    }
}

/// A compiled profile: the BPF program and the seccomp(2) flags to load it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub program: BpfProgram,
    pub flags: u32,
    /// Some rule is SCMP_ACT_NOTIFY: [`load`] returns the notify fd.
    pub notify: bool,
}

/// SECCOMP_RET_USER_NOTIF.
const RET_USER_NOTIF: u32 = 0x7fc0_0000;
/// SECCOMP_FILTER_FLAG_NEW_LISTENER.
const FLAG_NEW_LISTENER: u32 = 1 << 3;

// Classic BPF opcodes (linux/bpf_common.h).
const BPF_LD: u16 = 0x00;
const BPF_W: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_JMP: u16 = 0x05;
const BPF_JA: u16 = 0x00;
const BPF_JEQ: u16 = 0x10;
const BPF_JGE: u16 = 0x30;
const BPF_K: u16 = 0x00;
const BPF_RET: u16 = 0x06;
const BPF_MAXINSNS: usize = 4096;

const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const SECCOMP_FILTER_FLAG_TSYNC: u32 = 1;
const SECCOMP_FILTER_FLAG_LOG: u32 = 2;
const SECCOMP_FILTER_FLAG_SPEC_ALLOW: u32 = 4;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// Translates an OCI action (+ errno) into the kernel's return value, via
/// seccompiler's action type.
fn action(act: Act, errno: Option<u32>, field: &str) -> Result<u32, SeccompError> {
    let errno = errno.unwrap_or(libc::EPERM as u32);
    let a = match act {
        Act::ScmpActKill | Act::ScmpActKillThread => SeccompAction::KillThread,
        Act::ScmpActKillProcess => SeccompAction::KillProcess,
        Act::ScmpActTrap => SeccompAction::Trap,
        Act::ScmpActErrno | Act::ScmpActTrace => {
            if errno > 4095 {
                return Err(invalid(
                    field,
                    format!("errno {errno} is out of range (at most 4095)"),
                ));
            }
            if act == Act::ScmpActErrno {
                SeccompAction::Errno(errno)
            } else {
                SeccompAction::Trace(errno)
            }
        }
        Act::ScmpActLog => SeccompAction::Log,
        Act::ScmpActAllow => SeccompAction::Allow,
        Act::ScmpActNotify => return Ok(RET_USER_NOTIF),
    };
    Ok(u32::from(a))
}

/// One rule of a syscall's chain: conditions (None = unconditional) and the
/// kernel return value.
type Rule = (Option<SeccompRule>, u32);

/// Compiles `linux.seccomp` for the native architecture.
pub fn compile(s: &LinuxSeccomp) -> Result<Filter, SeccompError> {
    let mut flags = 0;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            Flag::SeccompFilterFlagTsync => SECCOMP_FILTER_FLAG_TSYNC,
            Flag::SeccompFilterFlagLog => SECCOMP_FILTER_FLAG_LOG,
            Flag::SeccompFilterFlagSpecAllow => SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            // Only meaningful for NOTIFY listeners; the kernel's default is kept.
            Flag::SeccompFilterFlagWaitKillableRecv => 0,
        };
    }
    // Every arch name oci-spec can parse is accepted; see the module docs.
    let _ = s.architectures();

    let default = action(
        s.default_action(),
        s.default_errno_ret(),
        "linux.seccomp.defaultAction",
    )?;
    let foreign_abi = match s.default_action() {
        Act::ScmpActAllow | Act::ScmpActLog => u32::from(SeccompAction::KillProcess),
        _ => default,
    };

    let mut chains: BTreeMap<u32, Vec<Rule>> = BTreeMap::new();
    for (i, sc) in s.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        if sc.names().is_empty() {
            return Err(invalid(format!("{field}.names"), "is empty"));
        }
        let ret = action(sc.action(), sc.errno_ret(), &format!("{field}.action"))?;
        // Conditions, grouped into rules.
        let mut conds = Vec::new();
        let mut seen = [0u8; 6];
        for (j, a) in sc.args().iter().flatten().enumerate() {
            let af = format!("{field}.args[{j}]");
            if a.index() > 5 {
                return Err(invalid(
                    format!("{af}.index"),
                    format!(
                        "{} is out of range (a syscall has 6 arguments, 0-5)",
                        a.index()
                    ),
                ));
            }
            seen[a.index()] += 1;
            let (op, value) = match a.op() {
                Op::ScmpCmpNe => (SeccompCmpOp::Ne, a.value()),
                Op::ScmpCmpLt => (SeccompCmpOp::Lt, a.value()),
                Op::ScmpCmpLe => (SeccompCmpOp::Le, a.value()),
                Op::ScmpCmpEq => (SeccompCmpOp::Eq, a.value()),
                Op::ScmpCmpGe => (SeccompCmpOp::Ge, a.value()),
                Op::ScmpCmpGt => (SeccompCmpOp::Gt, a.value()),
                Op::ScmpCmpMaskedEq => (
                    SeccompCmpOp::MaskedEq(a.value()),
                    a.value_two().unwrap_or(0),
                ),
            };
            let c = SeccompCondition::new(a.index() as u8, SeccompCmpArgLen::Qword, op, value)
                .map_err(|e| invalid(&af, e.to_string()))?;
            conds.push(c);
        }
        let rules: Vec<Option<SeccompRule>> = if conds.is_empty() {
            vec![None]
        } else if seen.iter().any(|&n| n > 1) {
            conds
                .into_iter()
                .map(|c| SeccompRule::new(vec![c]).ok())
                .collect()
        } else {
            vec![Some(
                SeccompRule::new(conds).map_err(|e| invalid(&field, e.to_string()))?,
            )]
        };
        for (k, name) in sc.names().iter().enumerate() {
            if name.is_empty() {
                return Err(invalid(
                    format!("{field}.names[{k}]"),
                    "an empty string is not a syscall name",
                ));
            }
            // Unknown on this arch: skipped, as runc/libseccomp do.
            let Some(nr) = syscall_number(name) else {
                continue;
            };
            let chain = chains.entry(nr).or_default();
            for r in &rules {
                chain.push((r.clone(), ret));
            }
        }
    }

    let mut prog = vec![
        stmt(BPF_LD | BPF_W | BPF_ABS, SECCOMP_DATA_ARCH),
        jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(BPF_RET | BPF_K, foreign_abi),
        stmt(BPF_LD | BPF_W | BPF_ABS, SECCOMP_DATA_NR),
        jump(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1),
        stmt(BPF_RET | BPF_K, foreign_abi),
    ];
    // Per syscall, the layout seccompiler's own filters use, so its rule
    // programs (with their jump conventions) can be reused:
    //   JEQ nr ? next : skip 1
    //   rule 1 (enter, skip-out, conditions) ; RET action1
    //   ...
    //   RET default
    // A rule's "skip-out" jump lands on the next rule's skip-out, the last
    // one on the instruction after `RET default`, i.e. the next syscall.
    for (nr, chain) in chains {
        prog.push(jump(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1));
        for (rule, ret) in chain {
            match rule {
                Some(rule) => prog.extend(BpfProgram::from(rule)),
                None => {
                    prog.push(stmt(BPF_JMP | BPF_JA, 1));
                    prog.push(stmt(BPF_JMP | BPF_JA, 2));
                }
            }
            prog.push(stmt(BPF_RET | BPF_K, ret));
        }
        prog.push(stmt(BPF_RET | BPF_K, default));
    }
    prog.push(stmt(BPF_RET | BPF_K, default));
    if prog.len() > BPF_MAXINSNS {
        return Err(SeccompError::TooLarge(prog.len()));
    }
    let notify = s.default_action() == Act::ScmpActNotify
        || s.syscalls()
            .iter()
            .flatten()
            .any(|sc| sc.action() == Act::ScmpActNotify);
    if notify && s.listener_path().is_none() {
        return Err(invalid(
            "linux.seccomp.listenerPath",
            "SCMP_ACT_NOTIFY needs a listenerPath (the seccomp agent's socket)",
        ));
    }
    if notify {
        flags |= FLAG_NEW_LISTENER;
    }
    Ok(Filter {
        program: prog,
        flags,
        notify,
    })
}

/// The native syscall number of `name`, None when unknown on this arch.
pub fn syscall_number(name: &str) -> Option<u32> {
    syscalls::Sysno::from_str(name).ok().map(|s| s.id() as u32)
}

#[repr(C)]
struct SockFprog {
    len: libc::c_ushort,
    filter: *const sock_filter,
}

/// Installs `f` on the calling thread. Without no_new_privs this needs
/// CAP_SYS_ADMIN (in the user namespace).
pub fn load(f: &Filter) -> Result<Option<std::os::fd::OwnedFd>, SeccompError> {
    let prog = SockFprog {
        len: f.program.len() as libc::c_ushort,
        filter: f.program.as_ptr(),
    };
    // SAFETY: the kernel copies the program; `prog` and `f.program` outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            f.flags as libc::c_ulong,
            &prog as *const SockFprog,
        )
    };
    if rc < 0 {
        return Err(SeccompError::Load(std::io::Error::last_os_error()));
    }
    if f.notify {
        // SAFETY: with NEW_LISTENER the kernel returns a fresh fd.
        return Ok(Some(unsafe {
            std::os::fd::FromRawFd::from_raw_fd(rc as i32)
        }));
    }
    if rc > 0 {
        return Err(SeccompError::Load(std::io::Error::other(format!(
            "thread {rc} could not be synchronized (TSYNC)"
        ))));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(json).unwrap()
    }

    /// A tiny classic-BPF interpreter for seccomp programs, enough to check
    /// what the kernel would return for a syscall.
    fn run(prog: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = Vec::new();
        data.extend_from_slice(&nr.to_ne_bytes());
        data.extend_from_slice(&arch.to_ne_bytes());
        data.extend_from_slice(&0u64.to_ne_bytes());
        for a in args {
            data.extend_from_slice(&a.to_ne_bytes());
        }
        let mut acc: u32 = 0;
        let mut pc = 0usize;
        loop {
            let i = &prog[pc];
            let class = i.code & 0x07;
            match class {
                0x00 => {
                    // LD W ABS
                    let off = i.k as usize;
                    acc = u32::from_ne_bytes(data[off..off + 4].try_into().unwrap());
                    pc += 1;
                }
                0x04 => {
                    // ALU
                    match i.code & 0xf0 {
                        0x50 => acc &= i.k,
                        op => panic!("alu op {op:#x}"),
                    }
                    pc += 1;
                }
                0x05 => {
                    let op = i.code & 0xf0;
                    if op == 0x00 {
                        pc += 1 + i.k as usize;
                        continue;
                    }
                    let t = match op {
                        0x10 => acc == i.k,
                        0x20 => acc > i.k,
                        0x30 => acc >= i.k,
                        0x40 => acc & i.k != 0,
                        _ => panic!("jmp op {op:#x}"),
                    };
                    pc += 1 + if t { i.jt as usize } else { i.jf as usize };
                }
                0x06 => return i.k,
                c => panic!("class {c:#x}"),
            }
        }
    }

    fn nr(name: &str) -> u32 {
        syscall_number(name).unwrap()
    }

    const ALLOW: u32 = 0x7fff_0000;
    const ERRNO: u32 = 0x0005_0000;

    #[test]
    fn errno_rule_and_default_allow() {
        let f = compile(&spec(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat", "no_such_syscall_xyz"], "action": "SCMP_ACT_ERRNO"}]
        })))
        .unwrap();
        let p = &f.program;
        assert_eq!(run(p, AUDIT_ARCH_X86_64, nr("mkdir"), [0; 6]), ERRNO | 1);
        assert_eq!(run(p, AUDIT_ARCH_X86_64, nr("mkdirat"), [0; 6]), ERRNO | 1);
        assert_eq!(run(p, AUDIT_ARCH_X86_64, nr("getpid"), [0; 6]), ALLOW);
        // Foreign ABIs cannot bypass a default-allow profile.
        assert_eq!(run(p, 0x4000_0003, 39, [0; 6]), 0x8000_0000);
        assert_eq!(
            run(p, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | nr("mkdir"), [0; 6]),
            0x8000_0000
        );
    }

    #[test]
    fn default_errno_and_actions() {
        let f = compile(&spec(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["getpid"], "action": "SCMP_ACT_KILL"},
                {"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"},
                {"names": ["getuid"], "action": "SCMP_ACT_TRAP"},
                {"names": ["getgid"], "action": "SCMP_ACT_LOG"},
                {"names": ["geteuid"], "action": "SCMP_ACT_TRACE", "errnoRet": 5},
                {"names": ["getegid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
            ]
        })))
        .unwrap();
        assert_eq!(f.flags, SECCOMP_FILTER_FLAG_LOG);
        let p = &f.program;
        let r = |n: &str| run(p, AUDIT_ARCH_X86_64, nr(n), [0; 6]);
        assert_eq!(r("read"), ALLOW);
        assert_eq!(r("write"), ALLOW);
        assert_eq!(r("getpid"), 0);
        assert_eq!(r("getppid"), 0x8000_0000);
        assert_eq!(r("getuid"), 0x0003_0000);
        assert_eq!(r("getgid"), 0x7ffc_0000);
        assert_eq!(r("geteuid"), 0x7ff0_0005);
        assert_eq!(r("getegid"), ERRNO | 13);
        assert_eq!(r("mkdir"), ERRNO | 38);
        // Default-deny: foreign ABIs get the default action.
        assert_eq!(run(p, 0x4000_0003, 3, [0; 6]), ERRNO | 38);
    }

    #[test]
    fn arg_ops() {
        let rule = |op: &str, v: u64, v2: Option<u64>| {
            let mut a = serde_json::json!({"index": 1, "value": v, "op": op});
            if let Some(v2) = v2 {
                a["valueTwo"] = v2.into();
            }
            compile(&spec(serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["ioctl"], "action": "SCMP_ACT_ERRNO", "args": [a]}]
            })))
            .unwrap()
            .program
        };
        let hit = |p: &[sock_filter], x: u64| {
            run(p, AUDIT_ARCH_X86_64, nr("ioctl"), [0, x, 0, 0, 0, 0]) == ERRNO | 1
        };
        let big = 0x1_0000_0005u64;
        let p = rule("SCMP_CMP_EQ", big, None);
        assert!(hit(&p, big) && !hit(&p, 5) && !hit(&p, big + 1));
        let p = rule("SCMP_CMP_NE", 5, None);
        assert!(!hit(&p, 5) && hit(&p, 6) && hit(&p, big));
        let p = rule("SCMP_CMP_LT", 10, None);
        assert!(hit(&p, 9) && !hit(&p, 10) && !hit(&p, big));
        let p = rule("SCMP_CMP_LE", 10, None);
        assert!(hit(&p, 10) && !hit(&p, 11));
        let p = rule("SCMP_CMP_GT", 10, None);
        assert!(hit(&p, 11) && !hit(&p, 10) && hit(&p, big));
        let p = rule("SCMP_CMP_GE", 10, None);
        assert!(hit(&p, 10) && !hit(&p, 9));
        let p = rule("SCMP_CMP_MASKED_EQ", 0xff00, Some(0x1200));
        assert!(hit(&p, 0x12ab) && !hit(&p, 0x13ab) && hit(&p, 0x7712ff));
    }

    #[test]
    fn several_args_and_same_index_or() {
        // Different indexes: AND.
        let p = compile(&spec(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [
                {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]},
                {"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS", "args": [
                {"index": 1, "value": 15, "op": "SCMP_CMP_EQ"}]}]
        })))
        .unwrap()
        .program;
        let k = |a0, a1| run(&p, AUDIT_ARCH_X86_64, nr("kill"), [a0, a1, 0, 0, 0, 0]);
        assert_eq!(k(1, 9), ERRNO | 1);
        assert_eq!(k(2, 9), ALLOW);
        assert_eq!(k(1, 8), ALLOW);
        assert_eq!(k(3, 15), 0x8000_0000);
        // Same index twice: OR (runc's behaviour).
        let p = compile(&spec(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [
                {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]}]
        })))
        .unwrap()
        .program;
        let k = |a0| {
            run(
                &p,
                AUDIT_ARCH_X86_64,
                nr("personality"),
                [a0, 0, 0, 0, 0, 0],
            )
        };
        assert_eq!(k(1), ERRNO | 1);
        assert_eq!(k(2), ERRNO | 1);
        assert_eq!(k(3), ALLOW);
    }

    #[test]
    fn many_syscalls_chain_correctly() {
        let names: Vec<&str> = [
            "read",
            "write",
            "openat",
            "close",
            "mmap",
            "brk",
            "exit_group",
        ]
        .to_vec();
        let p = compile(&spec(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": names, "action": "SCMP_ACT_ALLOW"},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0x7e020000u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}
            ]
        })))
        .unwrap()
        .program;
        for n in names {
            assert_eq!(run(&p, AUDIT_ARCH_X86_64, nr(n), [0; 6]), ALLOW, "{n}");
        }
        assert_eq!(
            run(&p, AUDIT_ARCH_X86_64, nr("clone"), [0x11, 0, 0, 0, 0, 0]),
            ALLOW
        );
        assert_eq!(
            run(
                &p,
                AUDIT_ARCH_X86_64,
                nr("clone"),
                [0x2000_0000, 0, 0, 0, 0, 0]
            ),
            ERRNO | 1
        );
        assert_eq!(run(&p, AUDIT_ARCH_X86_64, nr("getpid"), [0; 6]), ERRNO | 1);
    }

    #[test]
    fn bad_inputs_name_the_field() {
        let e = compile(&spec(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO"},
                         {"names": ["write"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]
        })))
        .unwrap_err()
        .to_string();
        assert!(e.contains("linux.seccomp.syscalls[1].args[0].index"), "{e}");

        let e = compile(&spec(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]
        })))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("linux.seccomp.listenerPath") && e.contains("NOTIFY"),
            "{e}"
        );
        let f = compile(&spec(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]
        })))
        .unwrap();
        assert!(f.notify && f.flags & FLAG_NEW_LISTENER != 0);

        let e = compile(&spec(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read", ""], "action": "SCMP_ACT_ERRNO"}]
        })))
        .unwrap_err()
        .to_string();
        assert!(e.contains("linux.seccomp.syscalls[0].names[1]"), "{e}");

        // A listener without NOTIFY rules: nothing to hand over (runc too).
        let f = compile(&spec(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"
        })))
        .unwrap();
        assert!(!f.notify);

        let e = compile(&spec(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 100000
        })))
        .unwrap_err()
        .to_string();
        assert!(e.contains("linux.seccomp.defaultAction"), "{e}");

        let e = compile(&spec(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]
        })))
        .unwrap_err()
        .to_string();
        assert!(e.contains("linux.seccomp.syscalls[0].names"), "{e}");
    }

    /// The kernel accepts the program and enforces it (in a forked child,
    /// with no_new_privs so no privilege is needed).
    #[test]
    fn kernel_loads_and_enforces() {
        let f = compile(&spec(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42},
                {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 43,
                 "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}]}
            ]
        })))
        .unwrap();
        // SAFETY: the child only makes syscalls and _exits.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let code = (|| {
                    // SAFETY: plain prctl / syscalls.
                    unsafe {
                        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                            return 10;
                        }
                        if load(&f).is_err() {
                            return 11;
                        }
                        if libc::syscall(libc::SYS_getppid) != -1 || *libc::__errno_location() != 42
                        {
                            return 12;
                        }
                        if libc::syscall(libc::SYS_kill, libc::getpid(), 0) != -1
                            || *libc::__errno_location() != 43
                        {
                            return 13;
                        }
                        if libc::syscall(libc::SYS_getpid) <= 0 {
                            return 14;
                        }
                    }
                    0
                })();
                // SAFETY: leave the forked test child at once.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let st = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(st, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }

    #[test]
    fn flags() {
        let f = compile(&spec(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                      "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
        })))
        .unwrap();
        assert_eq!(f.flags, 1 | 4);
        // An empty profile is just the arch check and the default.
        assert_eq!(run(&f.program, AUDIT_ARCH_X86_64, 0, [0; 6]), ALLOW);
    }
}
