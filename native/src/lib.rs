//! `switch_native`: the Python face of the switch's compiled core.
//!
//! Each area keeps its bindings in its own module and registers them here, so the
//! codec and the payment crypto can grow without touching each other.
use pyo3::prelude::*;

mod crypto;
mod iso;

#[pymodule]
fn switch_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    iso::register(m)?;
    crypto::register(m)?;
    Ok(())
}
