//! `IsalMember`: one gzip member inflated by ISA-L's igzip (hand-written assembly, chosen for the
//! CPU at run time), chunk by chunk, through a safe wrapper around the `isal-sys` FFI.

use std::mem::MaybeUninit;
use std::ptr;

use isal::isal_sys::igzip_lib::{
    inflate_state, isal_block_state_ISAL_BLOCK_FINISH, isal_gzip_header, isal_gzip_header_init,
    isal_inflate, isal_inflate_init, isal_inflate_reset, isal_read_gzip_header, IGZIP_GZIP,
    ISAL_INCORRECT_CHECKSUM, ISAL_INVALID_BLOCK, ISAL_INVALID_LOOKBACK, ISAL_INVALID_SYMBOL,
    ISAL_INVALID_WRAPPER, ISAL_UNSUPPORTED_METHOD,
};

use crate::gzip::{Inflated, MemberInflater, RESERVED_FLAGS_MESSAGE};

/// A member's first bytes: the magic number, the method (deflate) and the FLG byte.
const MAGIC: [u8; 2] = [0x1f, 0x8b];
const DEFLATE: u8 = 8;
/// RFC 1952: the three high FLG bits are reserved and a decoder must refuse them; zlib does,
/// ISA-L does not.
const FLG_RESERVED: u8 = 0xE0;
const HEAD_LEN: usize = 4;

/// ISA-L's inflater of the current member and the gzip header it is reading.
pub struct IsalMember {
    /// About 90 KiB (tables and ISA-L's own history buffer): boxed, allocated once per verifier.
    state: Box<inflate_state>,
    /// Kept between calls: ISA-L resumes a header split across chunks from it.
    header: isal_gzip_header,
    /// The member's first bytes so far, checked as zlib checks them: as soon as each arrives
    /// (ISA-L waits for the whole 10-byte header and ignores the reserved flags).
    head: [u8; HEAD_LEN],
    head_len: usize,
}

// SAFETY: the raw pointers inside `inflate_state` and `isal_gzip_header` point only into the
// buffers of the current `inflate` call (reset to null before it returns) or are null (the
// header's name, comment and extra buffers); the state is owned by this value alone.
unsafe impl Send for IsalMember {}

impl IsalMember {
    pub fn new() -> Self {
        let mut state = zeroed_state();
        // SAFETY: `state` is a valid, exclusively borrowed `inflate_state`.
        unsafe { isal_inflate_init(&raw mut *state) };
        state.crc_flag = IGZIP_GZIP; // gzip wrapper: header read, CRC-32 and ISIZE checked
        let mut header = MaybeUninit::<isal_gzip_header>::zeroed();
        // SAFETY: `isal_gzip_header_init` writes every field of the header it is given.
        let header = unsafe {
            isal_gzip_header_init(header.as_mut_ptr());
            header.assume_init()
        };
        Self {
            state,
            header,
            head: [0; HEAD_LEN],
            head_len: 0,
        }
    }

    /// Check the member's magic number, method and flags, in zlib's order and words, as soon as
    /// `input` brings them.
    fn check_head(&mut self, input: &[u8]) -> Result<(), String> {
        let first = self.head_len;
        let take = (HEAD_LEN - first).min(input.len());
        self.head[first..first + take].copy_from_slice(&input[..take]);
        self.head_len += take;
        let arrived = |len: usize| first < len && self.head_len >= len;
        if arrived(2) && self.head[..2] != MAGIC {
            return Err("incorrect header check".to_owned());
        }
        if arrived(3) && self.head[2] != DEFLATE {
            return Err("unknown compression method".to_owned());
        }
        if arrived(4) && self.head[3] & FLG_RESERVED != 0 {
            return Err(RESERVED_FLAGS_MESSAGE.to_owned());
        }
        Ok(())
    }

    /// Read the member's header (possibly split across chunks); a negative ISA-L code on error.
    fn read_header(&mut self) -> i32 {
        // SAFETY: `state` and `header` are valid and exclusively borrowed; the state's input
        // pointer and length describe a live slice (set by `inflate`); the header's name,
        // comment and extra buffers are null, so ISA-L skips those fields without storing them.
        unsafe { isal_read_gzip_header(&raw mut *self.state, &raw mut self.header) }
    }
}

impl MemberInflater for IsalMember {
    fn inflate(&mut self, input: &[u8], output: &mut [u8]) -> Result<Inflated, String> {
        if self.head_len < HEAD_LEN {
            self.check_head(input)?;
        }
        // ISA-L counts in u32: a larger slice is taken in part (the caller loops).
        let avail_in = u32::try_from(input.len()).unwrap_or(u32::MAX);
        let avail_out = u32::try_from(output.len()).unwrap_or(u32::MAX);
        self.state.next_in = input.as_ptr().cast_mut(); // ISA-L only reads through it
        self.state.avail_in = avail_in;
        self.state.next_out = output.as_mut_ptr();
        self.state.avail_out = avail_out;
        let in_header = self.state.wrapper_flag == 0;
        let mut code = if in_header { self.read_header() } else { 0 };
        if code == 0 && self.state.wrapper_flag != 0 {
            // SAFETY: the state is valid and exclusively borrowed; its input pointer and length
            // describe `input` (read only) and its output pointer and length `output`, both
            // alive for this call.
            code = unsafe { isal_inflate(&raw mut *self.state) };
        }
        let read = (avail_in - self.state.avail_in) as usize;
        let written = (avail_out - self.state.avail_out) as usize;
        // No pointer into the caller's buffers outlives the call.
        self.state.next_in = ptr::null_mut();
        self.state.avail_in = 0;
        self.state.next_out = ptr::null_mut();
        self.state.avail_out = 0;
        if code < 0 {
            return Err(corrupt_reason(
                code,
                in_header && self.state.wrapper_flag == 0,
            ));
        }
        Ok(Inflated {
            read,
            written,
            member_end: self.state.block_state == isal_block_state_ISAL_BLOCK_FINISH,
        })
    }

    fn next_member(&mut self) {
        // SAFETY: the state is valid and exclusively borrowed; the reset keeps `crc_flag`.
        unsafe { isal_inflate_reset(&raw mut *self.state) };
        // SAFETY: `isal_gzip_header_init` writes every field of the header it is given.
        unsafe { isal_gzip_header_init(&raw mut self.header) };
        self.head_len = 0;
    }
}

/// A heap-allocated `inflate_state` of zero bytes (it is too large for the stack to be a good
/// place to build it).
fn zeroed_state() -> Box<inflate_state> {
    let mut state = Box::<inflate_state>::new_uninit();
    // SAFETY: the pointer is valid for writing one `inflate_state`, and it is written whole.
    unsafe { state.as_mut_ptr().write_bytes(0, 1) };
    // SAFETY: all-zero bytes are a valid `inflate_state`: its fields are integers, raw pointers
    // and arrays and unions of those.
    unsafe { state.assume_init() }
}

/// Why ISA-L refused the stream, in zlib's words where zlib has them.
fn corrupt_reason(code: i32, in_header: bool) -> String {
    let why = match code {
        ISAL_INVALID_WRAPPER => "incorrect header check",
        ISAL_UNSUPPORTED_METHOD => "unknown compression method",
        ISAL_INCORRECT_CHECKSUM if in_header => "header crc mismatch",
        ISAL_INCORRECT_CHECKSUM => "incorrect data check (CRC-32 or length)",
        ISAL_INVALID_BLOCK => "invalid block type",
        ISAL_INVALID_SYMBOL => "invalid code",
        ISAL_INVALID_LOOKBACK => "invalid distance too far back",
        _ => "invalid deflate data",
    };
    why.to_owned()
}
