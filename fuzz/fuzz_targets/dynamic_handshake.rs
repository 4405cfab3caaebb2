//! Fuzzes the dynamic forward's handshake parser: no input may panic, and feeding the same
//! bytes in pieces must give the same request as feeding them at once.
#![no_main]

use flytube::dynamic::{Handshake, Outcome, Progress};
use libfuzzer_sys::fuzz_target;

/// Feeds `pieces` as a server would; returns the replies sent and the final progress, with
/// the pieces not fed after a request counted as its leftover (they are client data).
fn run<'a>(pieces: impl Iterator<Item = &'a [u8]>) -> (Vec<u8>, Progress) {
    let mut handshake = Handshake::new();
    let mut sent = Vec::new();
    let mut progress = Progress::NeedMore;
    let mut pieces = pieces.peekable();
    while let Some(piece) = pieces.next() {
        progress = handshake.feed(piece);
        while let Progress::Reply(bytes) = progress {
            sent.extend_from_slice(&bytes);
            progress = handshake.feed(&[]);
        }
        match &mut progress {
            Progress::NeedMore => {
                // What a timeout would send must exist in every state.
                let _ = handshake.abort(&Outcome::ClientTimeout);
            }
            Progress::Request(request) => {
                assert_ne!(request.target.port, 0);
                request.leftover.extend(pieces.by_ref().flatten());
                break;
            }
            Progress::Reject { .. } => break,
            Progress::Reply(_) => unreachable!("replies are drained above"),
        }
    }
    (sent, progress)
}

fuzz_target!(|data: &[u8]| {
    // The first byte sets the piece size, so the fuzzer explores splits too.
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let size = usize::from(seed % 32) + 1;
    let whole = run(std::iter::once(input));
    let pieces = run(input.chunks(size));
    if matches!(whole.1, Progress::Request(_)) {
        assert_eq!(whole, pieces, "splitting into {size}-byte pieces changed the request");
    }
});
