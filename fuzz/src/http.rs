//! `http`: the appliance's HTTP request heads (`net/src/http.rs`) as a peer sends them: the
//! bytes as they arrive, [`head_end`] to find the head, [`parse_head`] on it, and every
//! accessor of the request it accepts. Invariant: a request or a 400-class error, never a
//! panic.

use rhea_net::http::{head_end, parse_head};

/// Runs one input.
pub fn run(data: &[u8]) {
    let head = match head_end(data) {
        Some(end) => &data[..end],
        None => data,
    };
    match parse_head(head) {
        Ok(req) => {
            let _ = (req.method.len(), req.target.len(), req.version);
            let _ = req.headers().count();
            for name in ["host", "Content-Length", "connection", ""] {
                let _ = req.header(name);
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
