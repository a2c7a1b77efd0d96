//! Xen's generic shared ring (`io/ring.h`): requests from the front end, responses from the
//! back end, in one shared page.
//!
//! Layout: a 64-byte header — `req_prod`, `req_event`, `rsp_prod`, `rsp_event` (`u32` each),
//! then padding (4 bytes of per-protocol private data, 44 of pad) — followed by the entries.
//! An entry slot is as large as the larger of the request and response; the ring has the
//! largest power of two of them that fits a 4 KiB page. Indices are free-running `u32`s
//! (wrapping), masked to a slot.
//!
//! Notifications are suppressed by the event indices: a producer notifies only if the index
//! the consumer asked to be woken at (`req_event`/`rsp_event`) lies in the batch it just
//! published; a consumer about to sleep sets its event index to "the next one" and looks again
//! (the *final check*), so nothing published in between is missed.
//!
//! [`FrontRing`] is the front end's side. Its responses are validated: a back end that claims
//! more responses than there are requests outstanding (an index moved backwards or too far) is
//! a [`XenError::Protocol`] — the ring is then not trusted any further by the caller.
//! [`BackRing`] is the back end's side, for simulated back ends in tests (and any future back
//! end); it validates requests the same way.

use super::shared::{mb, rmb, wmb};
use super::{SharedMem, XenError};
use alloc::format;
use core::marker::PhantomData;

/// Bytes of the shared header before the first entry.
pub const HEADER: usize = 64;
const REQ_PROD: usize = 0;
const REQ_EVENT: usize = 4;
const RSP_PROD: usize = 8;
const RSP_EVENT: usize = 12;
const RING_PAGE: usize = super::shared::PAGE_SIZE;

/// A request or response of a ring protocol: its size and how it is laid out in a slot.
pub trait RingEntry: Sized {
    /// Bytes of the structure (as the C header lays it out).
    const SIZE: usize;
    /// Stores the entry at byte `at` of `mem`.
    fn write(&self, mem: &SharedMem, at: usize) -> Result<(), XenError>;
    /// Loads an entry from byte `at` of `mem`.
    fn read(mem: &SharedMem, at: usize) -> Result<Self, XenError>;
}

/// Slots of a one-page ring whose slot is `entry_size` bytes: the largest power of two that fits
/// (`__RING_SIZE`); 0 if not even one fits.
pub const fn ring_size(entry_size: usize) -> u32 {
    if entry_size == 0 || entry_size > RING_PAGE - HEADER {
        return 0;
    }
    let n = (RING_PAGE - HEADER) / entry_size;
    1 << (usize::BITS - 1 - n.leading_zeros())
}

const fn slot_size(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

fn check_page(mem: &SharedMem, size: u32) -> Result<(), XenError> {
    if mem.len() < RING_PAGE {
        return Err(XenError::Invalid(format!(
            "a ring needs a page, not {} bytes",
            mem.len()
        )));
    }
    if size == 0 {
        return Err(XenError::Invalid(
            "ring entries too large for a page".into(),
        ));
    }
    Ok(())
}

/// The front end's side of a ring of `Req` requests and `Rsp` responses.
#[derive(Debug)]
pub struct FrontRing<Req, Rsp> {
    mem: SharedMem,
    size: u32,
    /// Requests written, not necessarily published.
    req_prod_pvt: u32,
    /// Requests published (our own copy: the shared one is not trusted).
    req_prod: u32,
    /// Responses consumed.
    rsp_cons: u32,
    _entries: PhantomData<fn(Req) -> Rsp>,
}

impl<Req: RingEntry, Rsp: RingEntry> FrontRing<Req, Rsp> {
    /// Slots of this ring type.
    pub const SIZE: u32 = ring_size(slot_size(Req::SIZE, Rsp::SIZE));

    /// Initialises the shared ring in `mem` (a page; `SHARED_RING_INIT` and
    /// `FRONT_RING_INIT`): indices 0, event indices 1.
    pub fn new(mem: SharedMem) -> Result<Self, XenError> {
        Self::new_at(mem, 0)
    }

    /// As [`new`](Self::new), with every index starting at `start` instead of 0 (Xen always
    /// starts at 0; other starts exercise wrap-around).
    pub fn new_at(mem: SharedMem, start: u32) -> Result<Self, XenError> {
        check_page(&mem, Self::SIZE)?;
        mem.zero(0, HEADER)?;
        mem.write_u32(REQ_PROD, start)?;
        mem.write_u32(RSP_PROD, start)?;
        mem.write_u32(REQ_EVENT, start.wrapping_add(1))?;
        mem.write_u32(RSP_EVENT, start.wrapping_add(1))?;
        Ok(Self {
            mem,
            size: Self::SIZE,
            req_prod_pvt: start,
            req_prod: start,
            rsp_cons: start,
            _entries: PhantomData,
        })
    }

    /// The shared page.
    pub fn memory(&self) -> &SharedMem {
        &self.mem
    }

    /// Slots of the ring.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Requests written and not yet answered (published or not).
    pub fn outstanding(&self) -> u32 {
        self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Slots free for new requests.
    pub fn free_requests(&self) -> u32 {
        self.size - self.outstanding()
    }

    /// Whether no request can be written until responses are consumed.
    pub fn is_full(&self) -> bool {
        self.free_requests() == 0
    }

    fn slot(&self, index: u32) -> usize {
        HEADER + (index & (self.size - 1)) as usize * slot_size(Req::SIZE, Rsp::SIZE)
    }

    /// Writes `req` into the next slot (not yet visible: see
    /// [`push_requests`](Self::push_requests)). Fails if the ring is full.
    pub fn put_request(&mut self, req: &Req) -> Result<(), XenError> {
        if self.is_full() {
            return Err(XenError::Invalid(format!(
                "request ring full ({} slots)",
                self.size
            )));
        }
        req.write(&self.mem, self.slot(self.req_prod_pvt))?;
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Publishes the written requests; returns whether the back end must be notified
    /// (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`).
    pub fn push_requests(&mut self) -> Result<bool, XenError> {
        let old = self.req_prod;
        let new = self.req_prod_pvt;
        // The back end must see the requests before the index that publishes them.
        wmb();
        self.mem.write_u32(REQ_PROD, new)?;
        self.req_prod = new;
        // ... and the new index before we read the event index it may have just moved.
        mb();
        let event = self.mem.read_u32(REQ_EVENT)?;
        Ok(new.wrapping_sub(event) < new.wrapping_sub(old))
    }

    /// Responses published and not consumed, validated: more than the requests outstanding is
    /// a protocol error.
    pub fn unconsumed_responses(&self) -> Result<u32, XenError> {
        let prod = self.mem.read_u32(RSP_PROD)?;
        let unconsumed = prod.wrapping_sub(self.rsp_cons);
        let outstanding = self.req_prod.wrapping_sub(self.rsp_cons);
        if unconsumed > outstanding {
            return Err(XenError::Protocol(format!(
                "ring: response producer at {prod} is {unconsumed} past the consumer at {}, but only {outstanding} requests are outstanding",
                self.rsp_cons
            )));
        }
        Ok(unconsumed)
    }

    /// The next response, if one was published (`RING_GET_RESPONSE` + `rsp_cons++`).
    pub fn take_response(&mut self) -> Result<Option<Rsp>, XenError> {
        if self.unconsumed_responses()? == 0 {
            return Ok(None);
        }
        // Read the entry only after the index that published it.
        rmb();
        let rsp = Rsp::read(&self.mem, self.slot(self.rsp_cons))?;
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Ok(Some(rsp))
    }

    /// Before waiting for responses: asks to be notified at the next one, then looks again
    /// (`RING_FINAL_CHECK_FOR_RESPONSES`). `true`: responses are waiting, do not sleep.
    pub fn final_check_for_responses(&mut self) -> Result<bool, XenError> {
        if self.unconsumed_responses()? > 0 {
            return Ok(true);
        }
        self.mem
            .write_u32(RSP_EVENT, self.rsp_cons.wrapping_add(1))?;
        mb();
        Ok(self.unconsumed_responses()? > 0)
    }
}

/// The back end's side of a ring (for simulated back ends).
#[derive(Debug)]
pub struct BackRing<Req, Rsp> {
    mem: SharedMem,
    size: u32,
    req_cons: u32,
    rsp_prod_pvt: u32,
    rsp_prod: u32,
    _entries: PhantomData<fn(Req) -> Rsp>,
}

impl<Req: RingEntry, Rsp: RingEntry> BackRing<Req, Rsp> {
    /// Attaches to a ring the front end initialised in `mem` (`BACK_RING_ATTACH` at its
    /// current response index).
    pub fn attach(mem: SharedMem) -> Result<Self, XenError> {
        let size = FrontRing::<Req, Rsp>::SIZE;
        check_page(&mem, size)?;
        let start = mem.read_u32(RSP_PROD)?;
        Ok(Self {
            mem,
            size,
            req_cons: start,
            rsp_prod_pvt: start,
            rsp_prod: start,
            _entries: PhantomData,
        })
    }

    fn slot(&self, index: u32) -> usize {
        HEADER + (index & (self.size - 1)) as usize * slot_size(Req::SIZE, Rsp::SIZE)
    }

    /// The shared page.
    pub fn memory(&self) -> &SharedMem {
        &self.mem
    }

    /// Requests published and not consumed, validated against the ring's size.
    pub fn unconsumed_requests(&self) -> Result<u32, XenError> {
        let prod = self.mem.read_u32(REQ_PROD)?;
        let unconsumed = prod.wrapping_sub(self.req_cons);
        let room = self.size - self.req_cons.wrapping_sub(self.rsp_prod_pvt);
        if unconsumed > room {
            return Err(XenError::Protocol(format!(
                "ring: request producer at {prod} is {unconsumed} past the consumer, more than the {room} free slots"
            )));
        }
        Ok(unconsumed)
    }

    /// The next request, if one was published.
    pub fn take_request(&mut self) -> Result<Option<Req>, XenError> {
        if self.unconsumed_requests()? == 0 {
            return Ok(None);
        }
        rmb();
        let req = Req::read(&self.mem, self.slot(self.req_cons))?;
        self.req_cons = self.req_cons.wrapping_add(1);
        Ok(Some(req))
    }

    /// Writes a response into the next slot (one per consumed request).
    pub fn put_response(&mut self, rsp: &Rsp) -> Result<(), XenError> {
        if self.rsp_prod_pvt == self.req_cons {
            return Err(XenError::Invalid("a response without a request".into()));
        }
        rsp.write(&self.mem, self.slot(self.rsp_prod_pvt))?;
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Publishes the written responses; returns whether the front end must be notified.
    pub fn push_responses(&mut self) -> Result<bool, XenError> {
        let old = self.rsp_prod;
        let new = self.rsp_prod_pvt;
        wmb();
        self.mem.write_u32(RSP_PROD, new)?;
        self.rsp_prod = new;
        mb();
        let event = self.mem.read_u32(RSP_EVENT)?;
        Ok(new.wrapping_sub(event) < new.wrapping_sub(old))
    }

    /// Before waiting for requests: asks to be notified at the next one and looks again.
    pub fn final_check_for_requests(&mut self) -> Result<bool, XenError> {
        if self.unconsumed_requests()? > 0 {
            return Ok(true);
        }
        self.mem
            .write_u32(REQ_EVENT, self.req_cons.wrapping_add(1))?;
        mb();
        Ok(self.unconsumed_requests()? > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test request: one u32 (4 bytes) in an 8-byte slot shared with `Rsp`.
    #[derive(Debug, PartialEq, Eq, Clone, Copy)]
    struct Req(u32);
    #[derive(Debug, PartialEq, Eq, Clone, Copy)]
    struct Rsp(u64);
    impl RingEntry for Req {
        const SIZE: usize = 4;
        fn write(&self, m: &SharedMem, at: usize) -> Result<(), XenError> {
            m.write_u32(at, self.0)
        }
        fn read(m: &SharedMem, at: usize) -> Result<Self, XenError> {
            m.read_u32(at).map(Req)
        }
    }
    impl RingEntry for Rsp {
        const SIZE: usize = 8;
        fn write(&self, m: &SharedMem, at: usize) -> Result<(), XenError> {
            m.write_u64(at, self.0)
        }
        fn read(m: &SharedMem, at: usize) -> Result<Self, XenError> {
            m.read_u64(at).map(Rsp)
        }
    }

    #[test]
    fn ring_sizes_match_ring_h() {
        assert_eq!(ring_size(8), 256); // 504 fit
        assert_eq!(ring_size(12), 256); // netif tx: 336 fit
        assert_eq!(ring_size(112), 32); // blkif: 36 fit
        assert_eq!(ring_size(4032), 1);
        assert_eq!(ring_size(4033), 0);
        assert_eq!(FrontRing::<Req, Rsp>::SIZE, 256);
    }

    fn pair(start: u32) -> (FrontRing<Req, Rsp>, BackRing<Req, Rsp>, SharedMem) {
        let mem = SharedMem::alloc(1).unwrap();
        let f = FrontRing::new_at(mem.clone(), start).unwrap();
        let b = BackRing::attach(mem.clone()).unwrap();
        (f, b, mem)
    }

    /// The back end answers every request `r` with `r * 2`.
    fn serve(b: &mut BackRing<Req, Rsp>) -> (u32, bool) {
        let mut n = 0;
        while let Some(Req(r)) = b.take_request().unwrap() {
            b.put_response(&Rsp(r as u64 * 2)).unwrap();
            n += 1;
        }
        (n, b.push_responses().unwrap())
    }

    #[test]
    fn requests_and_responses_flow_with_notification_suppression() {
        let (mut f, mut b, mem) = pair(0);
        assert_eq!(mem.read_u32(REQ_EVENT).unwrap(), 1);
        f.put_request(&Req(1)).unwrap();
        // Not published yet.
        assert_eq!(b.take_request().unwrap(), None);
        assert!(
            f.push_requests().unwrap(),
            "req_event 1 is in the first batch"
        );
        // The back end did not ask to be woken again: no notification.
        f.put_request(&Req(2)).unwrap();
        assert!(!f.push_requests().unwrap());
        let (n, notify) = serve(&mut b);
        assert_eq!(n, 2);
        assert!(notify, "rsp_event 1 is in the batch");
        assert_eq!(f.take_response().unwrap(), Some(Rsp(2)));
        assert_eq!(f.take_response().unwrap(), Some(Rsp(4)));
        assert_eq!(f.take_response().unwrap(), None);
        // The back end goes to sleep: the next request must notify.
        assert!(!b.final_check_for_requests().unwrap());
        f.put_request(&Req(3)).unwrap();
        assert!(f.push_requests().unwrap());
        // The front end has not re-armed: the response is not notified...
        assert!(!serve(&mut b).1);
        // ... and the final check finds it instead of sleeping.
        assert!(f.final_check_for_responses().unwrap());
        assert_eq!(f.take_response().unwrap(), Some(Rsp(6)));
        assert!(!f.final_check_for_responses().unwrap());
        assert_eq!(mem.read_u32(RSP_EVENT).unwrap(), 4);
        f.put_request(&Req(4)).unwrap();
        f.push_requests().unwrap();
        assert!(serve(&mut b).1, "armed: notified");
    }

    #[test]
    fn a_full_ring_refuses_requests() {
        let (mut f, mut b, _) = pair(0);
        for i in 0..256 {
            f.put_request(&Req(i)).unwrap();
        }
        assert!(f.is_full());
        assert!(matches!(f.put_request(&Req(0)), Err(XenError::Invalid(_))));
        f.push_requests().unwrap();
        b.take_request().unwrap().unwrap();
        b.put_response(&Rsp(0)).unwrap();
        b.push_responses().unwrap();
        assert!(f.is_full(), "a slot frees when its response is consumed");
        f.take_response().unwrap().unwrap();
        assert_eq!(f.free_requests(), 1);
        f.put_request(&Req(9)).unwrap();
    }

    #[test]
    fn indices_wrap_past_2_pow_32() {
        let (mut f, mut b, mem) = pair(u32::MAX - 300);
        let mut next = 0u32;
        let mut expect = 0u32;
        for round in 0..7 {
            for _ in 0..(100 + round * 20) {
                f.put_request(&Req(next)).unwrap();
                next += 1;
            }
            f.push_requests().unwrap();
            serve(&mut b);
            while let Some(Rsp(v)) = f.take_response().unwrap() {
                assert_eq!(v, expect as u64 * 2);
                expect += 1;
            }
        }
        assert_eq!(expect, next);
        let prod = mem.read_u32(RSP_PROD).unwrap();
        assert!(prod < 1000, "the index wrapped: {prod}");
        assert!(!f.final_check_for_responses().unwrap());
    }

    #[test]
    fn a_back_end_producing_too_many_responses_is_an_error() {
        for start in [0, u32::MAX - 1] {
            let (mut f, _b, mem) = pair(start);
            f.put_request(&Req(1)).unwrap();
            f.put_request(&Req(2)).unwrap();
            f.push_requests().unwrap();
            // Three responses for two requests.
            mem.write_u32(RSP_PROD, start.wrapping_add(3)).unwrap();
            assert!(matches!(f.take_response(), Err(XenError::Protocol(_))));
            assert!(matches!(
                f.final_check_for_responses(),
                Err(XenError::Protocol(_))
            ));
            // An index that moved backwards.
            mem.write_u32(RSP_PROD, start.wrapping_sub(1)).unwrap();
            assert!(matches!(f.take_response(), Err(XenError::Protocol(_))));
            // Unpublished requests do not count.
            f.put_request(&Req(3)).unwrap();
            mem.write_u32(RSP_PROD, start.wrapping_add(3)).unwrap();
            assert!(f.take_response().is_err());
            mem.write_u32(RSP_PROD, start.wrapping_add(2)).unwrap();
            assert!(f.take_response().unwrap().is_some());
        }
    }

    #[test]
    fn a_front_end_overrunning_the_ring_is_an_error_for_the_back_end() {
        let (_f, mut b, mem) = pair(0);
        mem.write_u32(REQ_PROD, 257).unwrap();
        assert!(matches!(b.take_request(), Err(XenError::Protocol(_))));
        assert!(b.put_response(&Rsp(1)).is_err());
    }

    #[test]
    fn a_page_is_required() {
        let m = SharedMem::alloc(1).unwrap().sub(0, 100).unwrap();
        assert!(FrontRing::<Req, Rsp>::new(m).is_err());
    }
}
