//! `TesseraSeat`: a floating seat held from a license server, renewed by a background thread.

use std::ffi::{c_char, c_void, CString};

use tessera_client::{Seat, SeatEvent, SeatState};

use crate::status::{c_string, client_status, guard, guard_value, Failure, TesseraStatus};
use crate::{arg_ref, owned_string};

/// A floating seat held from a license server. A background thread renews its lease until it is
/// released (`tessera_seat_release`) or freed (`tessera_seat_free`), which return it.
///
/// Thread safety: a seat may be read from several threads at once; it must not be released or
/// freed while another thread uses it.
#[derive(Debug)]
pub struct TesseraSeat {
    inner: Option<Seat>,
    feature: CString,
}

impl TesseraSeat {
    pub(crate) fn new(seat: Seat) -> Self {
        let feature = c_string(seat.feature());
        TesseraSeat {
            inner: Some(seat),
            feature,
        }
    }

    fn seat(&self) -> Result<&Seat, Failure> {
        self.inner
            .as_ref()
            .ok_or_else(|| Failure::Invalid("the seat was already released".into()))
    }
}

/// Where a held seat stands.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TesseraSeatState {
    /// Held, renewed on time.
    Held = 0,
    /// The last renewal failed; the lease has not run out yet (plus the tolerance).
    Reconnecting = 1,
    /// Not held: stop using the feature (save the user's work). The heartbeat keeps asking for
    /// it again.
    Lost = 2,
    /// A state this version of the C API does not know (or `seat` was NULL).
    Unknown = 99,
}

/// What happened to a held seat, as the heartbeat saw it (given to a `TesseraSeatCallback`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TesseraSeatEvent {
    /// A renewal failed; the heartbeat keeps trying. The seat is held until its lease expires.
    Reconnecting = 0,
    /// After `RECONNECTING` or `LOST`: the lease was renewed (or the seat taken again).
    Reconnected = 1,
    /// The lease ran out without a renewal; the seat counts as held for the tolerance, then is
    /// lost.
    LeaseExpired = 2,
    /// The seat is no longer held: stop using the feature (save the user's work).
    Lost = 3,
    /// An event this version of the C API does not know.
    Other = 99,
}

/// Called with each event of a seat, on the seat's heartbeat thread: `user_data` as given to
/// `tessera_seat_on_event`, the event, the status of the error behind it
/// (`TESSERA_STATUS_OK` for `RECONNECTED` and `LEASE_EXPIRED`), and a message fit to show (valid
/// during the call only). Keep it short; it must not release or free the seat.
pub type TesseraSeatCallback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        event: TesseraSeatEvent,
        status: TesseraStatus,
        message: *const c_char,
    ),
>;

/// The caller's `user_data`, carried to the heartbeat thread.
struct UserData(*mut c_void);

// SAFETY: the pointer is only handed back to the caller's callback, never dereferenced here;
// `tessera_seat_on_event` requires the caller to make `user_data` usable from the heartbeat
// thread.
unsafe impl Send for UserData {}
// SAFETY: as for `Send`: shared only to be passed back to the caller.
unsafe impl Sync for UserData {}

/// Gives back the seat now and frees the handle (in every case): stops the heartbeat (waiting for
/// a renewal under way) and returns the seat to the server. When this returns, the seat's
/// callback is no longer called.
///
/// Errors: `TESSERA_STATUS_UNREACHABLE` or `TESSERA_STATUS_TIMED_OUT` when the server cannot be
/// reached (the seat comes back to the pool when its lease expires), `TESSERA_STATUS_SEAT_LOST`
/// when the seat was no longer held. `TESSERA_STATUS_NULL_ARGUMENT` for NULL.
///
/// # Safety
/// `seat` is NULL or a seat not yet released or freed; it is not used afterwards.
///
/// Thread safety: no other thread may be using `seat`; not from the seat's own callback.
#[no_mangle]
pub unsafe extern "C" fn tessera_seat_release(seat: *mut TesseraSeat) -> TesseraStatus {
    guard(|| {
        if seat.is_null() {
            return Err(Failure::Null("seat"));
        }
        // SAFETY: made by `into_handle`, released once (the caller's promise).
        let mut handle = unsafe { Box::from_raw(seat) };
        match handle.inner.take() {
            Some(s) => Ok(s.release()?),
            None => Ok(()),
        }
    })
}

/// Gives back the seat and frees the handle, ignoring whether the server could be reached (the
/// seat comes back to the pool when its lease expires). NULL does nothing. As
/// `tessera_seat_release`, the callback is no longer called once this returns.
///
/// # Safety
/// `seat` is NULL or a seat not yet released or freed; it is not used afterwards.
///
/// Thread safety: no other thread may be using `seat`; not from the seat's own callback.
#[no_mangle]
pub unsafe extern "C" fn tessera_seat_free(seat: *mut TesseraSeat) {
    guard_value((), || {
        if seat.is_null() {
            return Ok(());
        }
        // SAFETY: made by `into_handle`, freed once (the caller's promise).
        let mut handle = unsafe { Box::from_raw(seat) };
        if let Some(s) = handle.inner.take() {
            // joins the heartbeat, so the callback is not called after this returns
            let _ = s.release();
        }
        Ok(())
    });
}

/// Reads a seat; `fallback` when `seat` is NULL.
///
/// # Safety
/// `seat` is NULL or a live seat.
unsafe fn seat_field<T>(
    seat: *const TesseraSeat,
    fallback: T,
    f: impl FnOnce(&TesseraSeat) -> Result<T, Failure>,
) -> T {
    guard_value(fallback, || {
        // SAFETY: the caller's promise.
        let s = unsafe { arg_ref(seat, "seat") }?;
        f(s)
    })
}

/// The feature. Belongs to the seat; NULL when `seat` is NULL.
///
/// # Safety
/// `seat` is NULL or a live seat. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_seat_feature(seat: *const TesseraSeat) -> *const c_char {
    // SAFETY: the caller's promise.
    unsafe { seat_field(seat, std::ptr::null(), |s| Ok(s.feature.as_ptr())) }
}

/// The lease id (it changes when the seat is taken again after the server forgot it); 0 when
/// `seat` is NULL.
///
/// # Safety
/// `seat` is NULL or a live seat. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_seat_lease(seat: *const TesseraSeat) -> u64 {
    // SAFETY: the caller's promise.
    unsafe { seat_field(seat, 0, |s| Ok(s.seat()?.lease())) }
}

/// How many seats the lease holds; 0 when `seat` is NULL.
///
/// # Safety
/// `seat` is NULL or a live seat. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_seat_count(seat: *const TesseraSeat) -> u32 {
    // SAFETY: the caller's promise.
    unsafe { seat_field(seat, 0, |s| Ok(s.seat()?.count())) }
}

/// How many times the heartbeat renewed the lease; 0 when `seat` is NULL.
///
/// # Safety
/// `seat` is NULL or a live seat. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_seat_renewals(seat: *const TesseraSeat) -> u64 {
    // SAFETY: the caller's promise.
    unsafe { seat_field(seat, 0, |s| Ok(s.seat()?.renewals())) }
}

/// When the lease runs out unless renewed (unix seconds, by this computer's clock); -1 when
/// `seat` is NULL.
///
/// # Safety
/// `seat` is NULL or a live seat. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_seat_lease_expires(seat: *const TesseraSeat) -> i64 {
    // SAFETY: the caller's promise.
    unsafe { seat_field(seat, -1, |s| Ok(s.seat()?.lease_expires().unix_timestamp())) }
}

/// Held, reconnecting or lost (`TESSERA_SEAT_STATE_UNKNOWN` when `seat` is NULL).
///
/// # Safety
/// `seat` is NULL or a live seat. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_seat_state(seat: *const TesseraSeat) -> TesseraSeatState {
    // SAFETY: the caller's promise.
    unsafe {
        seat_field(seat, TesseraSeatState::Unknown, |s| {
            Ok(match s.seat()?.state() {
                SeatState::Held => TesseraSeatState::Held,
                SeatState::Reconnecting => TesseraSeatState::Reconnecting,
                SeatState::Lost => TesseraSeatState::Lost,
                _ => TesseraSeatState::Unknown,
            })
        })
    }
}

/// The version the server granted (at least the one asked for). The caller owns the string:
/// free it with `tessera_string_free`. NULL when `seat` is NULL.
///
/// # Safety
/// `seat` is NULL or a live seat. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_seat_granted_version(seat: *const TesseraSeat) -> *mut c_char {
    // SAFETY: the caller's promise.
    unsafe {
        seat_field(seat, std::ptr::null_mut(), |s| {
            Ok(owned_string(&s.seat()?.granted_version()))
        })
    }
}

/// The license server that holds the lease. The caller owns the string: free it with
/// `tessera_string_free`. NULL when `seat` is NULL.
///
/// # Safety
/// `seat` is NULL or a live seat. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_seat_server(seat: *const TesseraSeat) -> *mut c_char {
    // SAFETY: the caller's promise.
    unsafe {
        seat_field(seat, std::ptr::null_mut(), |s| {
            Ok(owned_string(&s.seat()?.server()))
        })
    }
}

/// Calls `callback(user_data, event, status, message)` with every event of the seat from now on,
/// on the seat's heartbeat thread (so an application learns at once that its seat is lost).
/// Several callbacks may be registered; none is called after the seat is released or freed.
///
/// # Safety
/// `seat` is NULL or a live seat; `callback` is NULL or a function safe to call from another
/// thread with `user_data`, which must stay valid until the seat is released or freed. The
/// callback must not unwind (no C++ exception may leave it).
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_seat_on_event(
    seat: *const TesseraSeat,
    callback: TesseraSeatCallback,
    user_data: *mut c_void,
) -> TesseraStatus {
    guard(|| {
        // SAFETY: the caller's promise.
        let s = unsafe { arg_ref(seat, "seat") }?;
        let Some(callback) = callback else {
            return Err(Failure::Null("callback"));
        };
        let data = UserData(user_data);
        s.seat()?.on_event(move |e: &SeatEvent| {
            let (event, status) = match e {
                SeatEvent::Reconnecting { error } => {
                    (TesseraSeatEvent::Reconnecting, client_status(error))
                }
                SeatEvent::Reconnected => (TesseraSeatEvent::Reconnected, TesseraStatus::Ok),
                SeatEvent::LeaseExpired { .. } => {
                    (TesseraSeatEvent::LeaseExpired, TesseraStatus::Ok)
                }
                SeatEvent::Lost { reason } => (TesseraSeatEvent::Lost, client_status(reason)),
                _ => (TesseraSeatEvent::Other, TesseraStatus::Ok),
            };
            let message = c_string(&e.to_string());
            let data = &data;
            // SAFETY: the caller registered a callback safe to call from this thread with its
            // `user_data`, which it keeps valid while the seat lives; `message` lives through
            // the call.
            unsafe { callback(data.0, event, status, message.as_ptr()) };
        });
        Ok(())
    })
}
