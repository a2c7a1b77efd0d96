//! The PV console ring (`io/console.h`, `xencons_interface`): one page shared with the console
//! back end (xenconsoled in dom0), holding an input ring of 1 KiB, an output ring of 2 KiB and
//! their free-running `u32` indices (`in_cons`, `in_prod`, `out_cons`, `out_prod`), each ring
//! indexed modulo its size. The guest produces output and consumes input; after either it
//! notifies the console's event channel. Indices that claim more bytes than a ring holds are
//! a broken back end: reported, never trusted for an access.

use crate::xen::{SharedMem, XenError};
use core::sync::atomic::{Ordering, fence};

const IN: usize = 0;
const IN_SIZE: u32 = 1024;
const OUT: usize = 1024;
const OUT_SIZE: u32 = 2048;
const IN_CONS: usize = 3072;
const IN_PROD: usize = 3076;
const OUT_CONS: usize = 3080;
const OUT_PROD: usize = 3084;

/// The guest's side of a console page.
#[derive(Debug)]
pub struct ConsoleRing {
    page: SharedMem,
}

impl ConsoleRing {
    /// The console page (at least 3,088 bytes: the layout's end).
    pub fn new(page: SharedMem) -> Result<ConsoleRing, XenError> {
        page.sub(0, OUT_PROD + 4)?;
        Ok(ConsoleRing { page })
    }

    /// Copies as much of `bytes` into the output ring as fits; returns how many. The caller
    /// notifies the event channel when this returned more than 0 (and waits for room when
    /// it returned less than asked).
    pub fn write(&self, bytes: &[u8]) -> Result<usize, XenError> {
        let cons = self.page.read_u32(OUT_CONS)?;
        let prod = self.page.read_u32(OUT_PROD)?;
        fence(Ordering::Acquire);
        let used = prod.wrapping_sub(cons);
        if used > OUT_SIZE {
            return Err(XenError::Protocol(alloc::format!(
                "console output indices claim {used} bytes in a {OUT_SIZE}-byte ring"
            )));
        }
        let n = bytes.len().min((OUT_SIZE - used) as usize);
        for (i, &b) in bytes[..n].iter().enumerate() {
            let at = (prod.wrapping_add(i as u32) % OUT_SIZE) as usize;
            self.page.write_u8(OUT + at, b)?;
        }
        fence(Ordering::Release);
        self.page.write_u32(OUT_PROD, prod.wrapping_add(n as u32))?;
        Ok(n)
    }

    /// Whether the back end has consumed every output byte.
    pub fn drained(&self) -> bool {
        matches!(
            (self.page.read_u32(OUT_CONS), self.page.read_u32(OUT_PROD)),
            (Ok(c), Ok(p)) if c == p
        )
    }

    /// Takes input bytes into `buf`; returns how many. The caller notifies the event channel
    /// when this returned more than 0 (the back end may be waiting for room).
    pub fn read(&self, buf: &mut [u8]) -> Result<usize, XenError> {
        let cons = self.page.read_u32(IN_CONS)?;
        let prod = self.page.read_u32(IN_PROD)?;
        fence(Ordering::Acquire);
        let avail = prod.wrapping_sub(cons);
        if avail > IN_SIZE {
            return Err(XenError::Protocol(alloc::format!(
                "console input indices claim {avail} bytes in a {IN_SIZE}-byte ring"
            )));
        }
        let n = buf.len().min(avail as usize);
        for (i, slot) in buf[..n].iter_mut().enumerate() {
            let at = (cons.wrapping_add(i as u32) % IN_SIZE) as usize;
            *slot = self.page.read_u8(IN + at)?;
        }
        fence(Ordering::Release);
        self.page.write_u32(IN_CONS, cons.wrapping_add(n as u32))?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> (ConsoleRing, SharedMem) {
        let page = SharedMem::alloc(1).unwrap();
        let view = page.sub(0, 4096).unwrap();
        (ConsoleRing::new(page).unwrap(), view)
    }

    #[test]
    fn output_wraps_and_stops_when_full() {
        let (r, p) = ring();
        // Start near the u32 wrap to cross it.
        p.write_u32(OUT_CONS, u32::MAX - 5).unwrap();
        p.write_u32(OUT_PROD, u32::MAX - 5).unwrap();
        assert_eq!(r.write(b"hello").unwrap(), 5);
        assert!(!r.drained());
        // The bytes landed where the indices say, modulo the ring, across the u32 wrap.
        let at = |i: u32| ((u32::MAX - 5).wrapping_add(i) % 2048) as usize;
        assert_eq!(p.read_u8(OUT + at(0)).unwrap(), b'h');
        assert_eq!(p.read_u8(OUT + at(4)).unwrap(), b'o');
        let big = [b'x'; 3000];
        assert_eq!(r.write(&big).unwrap(), 2048 - 5, "only the free room");
        assert_eq!(r.write(b"more").unwrap(), 0, "full");
        // The back end consumes everything.
        let prod = p.read_u32(OUT_PROD).unwrap();
        p.write_u32(OUT_CONS, prod).unwrap();
        assert!(r.drained());
        assert_eq!(r.write(b"more").unwrap(), 4);
    }

    #[test]
    fn input_is_read_in_order_and_bad_indices_refused() {
        let (r, p) = ring();
        p.write_bytes(IN, b"ls\n").unwrap();
        p.write_u32(IN_PROD, 3).unwrap();
        let mut buf = [0u8; 2];
        assert_eq!(r.read(&mut buf).unwrap(), 2);
        assert_eq!(&buf, b"ls");
        assert_eq!(r.read(&mut buf).unwrap(), 1);
        assert_eq!(buf[0], b'\n');
        assert_eq!(r.read(&mut buf).unwrap(), 0);
        // A back end claiming more input than the ring holds.
        p.write_u32(IN_PROD, 3 + 5000).unwrap();
        assert!(matches!(r.read(&mut buf), Err(XenError::Protocol(_))));
        p.write_u32(OUT_PROD, 9000).unwrap();
        assert!(matches!(r.write(b"x"), Err(XenError::Protocol(_))));
    }
}
