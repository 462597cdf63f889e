//! The protocol between the runtime (host side) and its agent in a guest
//! (pid 1 in a pve-vm VM; later a pod's agent in a CT or VM).
//!
//! One byte stream (here a VM's serial port, `serial0: socket` on the
//! host), carrying frames: a 4-byte big-endian length, then that many bytes
//! of JSON ([`Frame`]). Every frame names a `stream`: the container (or,
//! later, the exec or pod member) it is about, so one connection can carry
//! many; stream 0 is the guest's own container.
//!
//! ```text
//! host                               guest agent
//!                   <- Hello{version}
//! Config{container} ->               prepares (mounts, user, caps, seccomp)
//!                   <- Ready | Error{message}
//! Start             ->               forks and execs the process
//!                   <- Started | Error{message}
//! Stdin{data}, StdinClose, Signal{signal} ->
//!                   <- Stdout{data}, Stderr{data}
//!                   <- Exit{code, signal}
//! Ack               ->               powers off
//! ```
//! Meanwhile `exec`: Exec{process} on a stream n > 0, answered Started or
//! Error on stream n, then its stdio, signals and Exit on stream n.
//!
//! A pod's agent (the init of a pod's CT, see [`pod`]) takes
//! `Member{member}` (set up one more container of the pod and start its
//! init), answered `Ready` or `Error{message}`: one frame each way per
//! connection on its unix socket, the member's own progress then going
//! through its exchange files. A pod VM's agent takes it on a stream n > 0
//! of its serial line (with the member's `disk` serial and `process`):
//! `Ready` (or `Error` then `Exit`), then `Start` -> `Started`, stdio,
//! signals and `Exit` on stream n, as an exec's.
use std::io::{self, Read, Write};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

pub mod init_config;
pub mod pod;

pub use init_config::{ExitStatus, InitConfig};

/// Bumped when a frame changes incompatibly.
pub const VERSION: u32 = 1;
/// Frames larger than this are refused (a corrupt length must not make the
/// reader allocate gigabytes). Data frames are cut well below it.
pub const MAX_FRAME: usize = 4 << 20;
/// Largest payload of one Stdin/Stdout/Stderr frame.
pub const MAX_DATA: usize = 32 << 10;
/// The kernel command line flag that makes our binary the VM's agent.
pub const CMDLINE_FLAG: &str = "lxcri.agent=vm";

/// One rlimit, by its OCI name (`RLIMIT_NOFILE`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rlimit {
    #[serde(rename = "type")]
    pub kind: String,
    pub soft: u64,
    pub hard: u64,
}

/// What the agent needs to run one container's process: the same init
/// config as the lxc engines' init, plus what LXC does there (hostname,
/// rlimits).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ContainerConfig {
    pub init: InitConfig,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
    /// The spec's kernel file system mounts (proc, sysfs, tmpfs, devpts,
    /// mqueue, cgroup2), in order; `/dev` is the guest's devtmpfs.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// The guest's NICs to configure (`eth0` is the VM's net0).
    #[serde(default)]
    pub network: Vec<Nic>,
}

/// One NIC of the guest: its static IPv4 address and default route.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Nic {
    pub name: String,
    /// `10.0.0.2/24`
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub gateway: Option<String>,
    /// `fd00::2/64`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<String>,
}

/// One mount of a kernel file system inside the guest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Mount {
    pub destination: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    #[serde(default)]
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    Hello {
        version: u32,
    },
    Config {
        container: Box<ContainerConfig>,
    },
    Ready,
    Error {
        message: String,
    },
    Start,
    /// Run one more process in the container (runc's `exec`), on a stream
    /// of its own (the host picks the number, not 0); answered on that
    /// stream as Start is: Started or Error, then its stdio and Exit.
    Exec {
        process: Box<InitConfig>,
        /// In a pod's VM: run it in this container of the pod (its mount
        /// and pid namespaces, its rlimits), not in the VM's own.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        member: Option<String>,
    },
    /// Add a container to the pod (to its pod agent).
    Member {
        member: Box<pod::MemberSpec>,
    },
    Started,
    Stdin {
        #[serde(with = "b64")]
        data: Vec<u8>,
    },
    StdinClose,
    Stdout {
        #[serde(with = "b64")]
        data: Vec<u8>,
    },
    Stderr {
        #[serde(with = "b64")]
        data: Vec<u8>,
    },
    Signal {
        signal: i32,
    },
    /// The terminal's new size (a process with a terminal).
    Resize {
        rows: u16,
        cols: u16,
    },
    Exit {
        status: ExitStatus,
    },
    Ack,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Frame {
    #[serde(default)]
    pub stream: u32,
    #[serde(flatten)]
    pub body: Body,
}

impl Frame {
    /// A frame about the guest's own container (stream 0).
    pub fn main(body: Body) -> Frame {
        Frame { stream: 0, body }
    }
}

mod b64 {
    use super::*;
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

/// One frame as bytes (length prefix included).
pub fn encode(f: &Frame) -> Vec<u8> {
    let json = serde_json::to_vec(f).expect("frames serialize");
    let mut out = Vec::with_capacity(4 + json.len());
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    out
}

/// Write one frame.
pub fn write_frame(w: &mut impl Write, f: &Frame) -> io::Result<()> {
    w.write_all(&encode(f))?;
    w.flush()
}

/// Read one frame; `Ok(None)` at a clean end of stream (before a frame).
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<Frame>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("agent frame of {len} bytes (at most {MAX_FRAME})"),
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    serde_json::from_slice(&buf)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("agent frame: {e}")))
}

/// Frames out of a non-blocking byte stream: feed what arrived, take
/// whole frames.
#[derive(Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole frame, if one has arrived.
    pub fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes(self.buf[..4].try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("agent frame of {len} bytes (at most {MAX_FRAME})"),
            ));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let f = serde_json::from_slice(&self.buf[4..4 + len])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("agent frame: {e}")));
        self.buf.drain(..4 + len);
        f.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_a_stream_and_the_decoder() {
        let frames = vec![
            Frame::main(Body::Hello { version: VERSION }),
            Frame::main(Body::Config {
                container: Box::new(ContainerConfig {
                    init: InitConfig {
                        args: vec!["sh".into(), "-c".into(), "echo hi".into()],
                        ..Default::default()
                    },
                    hostname: Some("h".into()),
                    rlimits: vec![Rlimit {
                        kind: "RLIMIT_NOFILE".into(),
                        soft: 1024,
                        hard: 4096,
                    }],
                    mounts: vec![],
                    network: vec![],
                }),
            }),
            Frame {
                stream: 3,
                body: Body::Stdout {
                    data: b"\0\xffbinary\n".to_vec(),
                },
            },
            Frame::main(Body::Exit {
                status: ExitStatus {
                    code: Some(7),
                    signal: None,
                },
            }),
        ];
        let mut bytes = vec![];
        for f in &frames {
            write_frame(&mut bytes, f).unwrap();
        }
        let mut r = &bytes[..];
        for f in &frames {
            assert_eq!(read_frame(&mut r).unwrap().as_ref(), Some(f));
        }
        assert!(read_frame(&mut r).unwrap().is_none());
        // Byte by byte through the decoder.
        let mut d = Decoder::default();
        let mut out = vec![];
        for b in &bytes {
            d.feed(&[*b]);
            while let Some(f) = d.next_frame().unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out, frames);
    }

    #[test]
    fn the_wire_form_is_tagged_json() {
        let b = encode(&Frame::main(Body::Signal { signal: 15 }));
        assert_eq!(&b[4..], br#"{"stream":0,"type":"signal","signal":15}"#);
        let b = encode(&Frame::main(Body::Stdin {
            data: b"hi".to_vec(),
        }));
        assert_eq!(&b[4..], br#"{"stream":0,"type":"stdin","data":"aGk="}"#);
    }

    #[test]
    fn oversized_and_truncated_frames_are_errors() {
        let mut r = &[0xffu8, 0xff, 0xff, 0xff][..];
        assert!(read_frame(&mut r).is_err());
        let mut r = &[0u8, 0][..];
        assert!(read_frame(&mut r).is_err());
        let mut d = Decoder::default();
        d.feed(&[0, 0, 0, 2, b'{', b'x']);
        assert!(d.next_frame().is_err());
    }
}
