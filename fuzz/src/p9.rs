//! `p9`: a 9P2000.L server's replies as a hostile or broken one sends them — the client
//! ([`rhea_vfs::p9::P9Fs`]) mounts and then walks, reads attributes, reads, lists, reads a
//! link, writes, creates and removes, each reply taken from the input in turn.
//! Invariant: every operation returns a value or an error, never a panic, an overflow or a
//! read past a reply; the client never sends a message larger than the negotiated size.
//!
//! Input: replies, each a 16-bit little-endian length then that many bytes; when the input
//! runs out, the transport fails.

use rhea_vfs::p9::{P9Fs, Transport};
use rhea_vfs::{ErrorKind, FileSystem, NewNode};
use std::sync::Mutex;

type Raw = spin::mutex::SpinMutex<()>;

struct Replies {
    data: Mutex<(Vec<u8>, usize)>,
    largest_request: Mutex<usize>,
}

impl Transport for &Replies {
    fn rpc(&self, request: &[u8], reply: &mut [u8]) -> Result<usize, ErrorKind> {
        {
            let mut l = self.largest_request.lock().unwrap();
            *l = (*l).max(request.len());
        }
        let mut d = self.data.lock().unwrap();
        let (bytes, at) = &mut *d;
        let Some(len) = bytes.get(*at..*at + 2) else {
            return Err(ErrorKind::Io("no more replies"));
        };
        let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
        let start = *at + 2;
        let end = (start + len).min(bytes.len());
        *at = end;
        let r = &bytes[start..end];
        let n = r.len().min(reply.len());
        reply[..n].copy_from_slice(&r[..n]);
        Ok(r.len())
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let replies = Replies {
        data: Mutex::new((data.to_vec(), 0)),
        largest_request: Mutex::new(0),
    };
    let Ok(fs) = P9Fs::<Raw, _>::mount(&replies, "share") else {
        return;
    };
    let msize = fs.msize() as usize;
    let root = fs.root();
    let mut buf = vec![0u8; 100_000];
    if let Ok(n) = fs.lookup(root, "f") {
        let _ = fs.metadata(n);
        let _ = fs.read(n, 0, &mut buf);
        let _ = fs.read_link(n);
        let _ = fs.write(n, 5, &buf[..70_000]);
        let _ = fs.set_len(n, 3);
        fs.release(n);
    }
    let _ = fs.read_dir(root, 0, &mut |_, name, _| !name.is_empty());
    for new in [
        NewNode::File { perm: 0o644 },
        NewNode::Dir { perm: 0o755 },
        NewNode::Symlink { target: "t" },
    ] {
        if let Ok(n) = fs.create(root, "new", new) {
            fs.release(n);
        }
    }
    let _ = fs.remove(root, "new", false);
    let _ = fs.rename(root, "a", root, "b");
    let _ = fs.usage();
    assert!(
        *replies.largest_request.lock().unwrap() <= msize,
        "a request larger than the negotiated message size"
    );
}
