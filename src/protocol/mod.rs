//! Wire-level pieces that are not plain message codecs: request framing,
//! v2 record-batch validation, and the hand-framed Fetch response.

pub mod batch;
pub mod fetch_response;
pub mod frame;
