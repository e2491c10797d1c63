//! RESP2/RESP3, server side: the request parser and the reply writer.
//!
//! Requests arrive as bytes in a connection's read buffer; [`parse_request`]
//! finds one complete request and records its arguments as ranges in a
//! preallocated [`Args`] table, so executing a command never copies or
//! allocates its arguments. Replies go through [`Reply`], which lowers RESP3
//! types (maps, sets, nulls, doubles, booleans) to RESP2 for connections that
//! did not switch with `HELLO 3`.

mod parser;
mod writer;

pub use parser::{
    parse_i64_strict, parse_request, Args, Argv, Limits, Parsed, ProtocolError, ARGS_MAX,
    ARGS_MAX_UNAUTHENTICATED, BULK_LEN_MAX, BULK_LEN_MAX_UNAUTHENTICATED, INLINE_LEN_MAX,
    REQUEST_LEN_MAX,
};
pub use writer::{format_f64, format_i64, Protocol, Reply, DOUBLE_TEXT_LEN_MAX};
