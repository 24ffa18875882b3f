//! Python bindings for the payment cryptography in `switch-paycrypto` (contract: the crypto
//! section of `switch_native.pyi`).
//!
//! Every error is a `CryptoError` (a `ValueError`) whose message names the argument. Calls
//! whose cost grows with the input release the GIL above a small size; the fixed-size PIN,
//! card and EMV operations are ~1 µs, where releasing and re-taking the GIL would cost more
//! than it frees.
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use switch_paycrypto as pc;
use switch_paycrypto::block::BlockCipher;
use switch_paycrypto::pinblock::{Format, Pin};

create_exception!(
    switch_native,
    CryptoError,
    PyValueError,
    "A payment-crypto input was rejected or a check failed; the message names the argument."
);

/// Inputs at least this long are processed with the GIL released.
const DETACH_AT: usize = 4096;

fn err(e: pc::CryptoError) -> PyErr {
    CryptoError::new_err(e.to_string())
}

fn bytes<'py>(py: Python<'py>, r: pc::Result<impl AsRef<[u8]>>) -> PyResult<Bound<'py, PyBytes>> {
    let v = r.map_err(err)?;
    Ok(PyBytes::new(py, v.as_ref()))
}

/// Runs `f` with the GIL released when the input is large enough for it to pay off.
fn run<T: Send>(py: Python<'_>, size: usize, f: impl FnOnce() -> T + Send) -> T {
    if size >= DETACH_AT {
        py.detach(f)
    } else {
        f()
    }
}

/// A Python int argument. Ints beyond 64 bits saturate, so they reach the range check and fail
/// with a `CryptoError` naming the argument instead of an `OverflowError`.
#[derive(Clone, Copy)]
struct Int(i64);

impl<'a, 'py> FromPyObject<'a, 'py> for Int {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        match obj.extract::<i64>() {
            Ok(v) => Ok(Int(v)),
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyOverflowError>(obj.py()) => {
                let negative = obj.lt(0i64)?;
                Ok(Int(if negative { i64::MIN } else { i64::MAX }))
            }
            Err(e) => Err(e),
        }
    }
}

fn fmt(field: &'static str, n: Int) -> PyResult<Format> {
    Format::from_int(field, n.0).map_err(err)
}

/// `name(key, data)` and `name(key, iv, data)` for each block cipher and mode:
/// `BlockCipher::<alg>("key", key)?.<op>(...)`, the GIL released for a large input.
macro_rules! cipher_functions {
    ($($name:ident: $alg:ident $op:ident;)*) => {$(
        #[pyfunction]
        fn $name<'py>(py: Python<'py>, key: &[u8], data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
            let r = run(py, data.len(), || BlockCipher::$alg("key", key)?.$op(data));
            bytes(py, r)
        }
    )*};
    ($($name:ident: $alg:ident $op:ident iv;)*) => {$(
        #[pyfunction]
        fn $name<'py>(
            py: Python<'py>,
            key: &[u8],
            iv: &[u8],
            data: &[u8],
        ) -> PyResult<Bound<'py, PyBytes>> {
            let r = run(py, data.len(), || BlockCipher::$alg("key", key)?.$op(iv, data));
            bytes(py, r)
        }
    )*};
}

cipher_functions! {
    des_encrypt_ecb: des encrypt_ecb;
    des_decrypt_ecb: des decrypt_ecb;
    aes_encrypt_ecb: aes encrypt_ecb;
    aes_decrypt_ecb: aes decrypt_ecb;
}

cipher_functions! {
    des_encrypt_cbc: des encrypt_cbc iv;
    des_decrypt_cbc: des decrypt_cbc iv;
    aes_encrypt_cbc: aes encrypt_cbc iv;
    aes_decrypt_cbc: aes decrypt_cbc iv;
}

#[pyfunction]
#[pyo3(signature = (key, algorithm = "des", length = Int(3)))]
fn key_check_value<'py>(
    py: Python<'py>,
    key: &[u8],
    algorithm: &str,
    length: Int,
) -> PyResult<Bound<'py, PyBytes>> {
    let length = usize::try_from(length.0).unwrap_or(0);
    bytes(py, pc::keys::key_check_value(key, algorithm, length))
}

#[pyfunction]
fn adjust_key_parity<'py>(py: Python<'py>, key: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    bytes(py, pc::keys::adjust_key_parity(key))
}

#[pyfunction]
fn key_parity_is_odd(key: &[u8]) -> PyResult<bool> {
    pc::keys::key_parity_is_odd(key).map_err(err)
}

#[pyfunction]
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    pc::keys::constant_time_eq(a, b)
}

#[pyfunction]
fn pin_block_encode<'py>(
    py: Python<'py>,
    fmt: Int,
    pin: &str,
    pan: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let f = self::fmt("fmt", fmt)?;
    let pin = Pin::parse(pin).map_err(err)?;
    let block = pc::pinblock::encode(f, &pin, pan).map_err(err)?;
    Ok(PyBytes::new(py, block.as_bytes()))
}

#[pyfunction]
fn pin_block_decode(fmt: Int, block: &[u8], pan: &str) -> PyResult<String> {
    let f = self::fmt("fmt", fmt)?;
    let pin = pc::pinblock::decode(f, block, pan).map_err(err)?;
    Ok(pin.to_ascii())
}

#[pyfunction]
fn pin_block_encrypt<'py>(
    py: Python<'py>,
    key: &[u8],
    fmt: Int,
    pin: &str,
    pan: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let f = self::fmt("fmt", fmt)?;
    bytes(py, pc::pinblock::encrypt(key, f, pin, pan))
}

#[pyfunction]
fn pin_block_translate<'py>(
    py: Python<'py>,
    src_key: &[u8],
    src_fmt: Int,
    dst_key: &[u8],
    dst_fmt: Int,
    block: &[u8],
    pan: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let sf = fmt("src_fmt", src_fmt)?;
    let df = fmt("dst_fmt", dst_fmt)?;
    let mut out = [0u8; 16];
    let n = pc::pinblock::translate_into(src_key, sf, dst_key, df, block, pan, &mut out)
        .map_err(err)?;
    Ok(PyBytes::new(py, &out[..n]))
}

#[pyfunction]
fn pin_block_pin_length(key: &[u8], fmt: Int, block: &[u8], pan: &str) -> PyResult<usize> {
    let f = self::fmt("fmt", fmt)?;
    let pin = pc::pinblock::decrypt("key", key, f, block, pan).map_err(err)?;
    Ok(pin.len())
}

#[pyfunction]
fn pvv_generate(pvk: &[u8], pan: &str, pvki: Int, pin: &str) -> PyResult<String> {
    pc::pvv::generate(pvk, pan, pvki.0, pin).map_err(err)
}

#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn pvv_verify(
    pin_key: &[u8],
    fmt: Int,
    block: &[u8],
    pan: &str,
    pvk: &[u8],
    pvki: Int,
    pvv: &str,
) -> PyResult<bool> {
    let f = self::fmt("fmt", fmt)?;
    pc::pvv::verify(pin_key, f, block, pan, pvk, pvki.0, pvv).map_err(err)
}

#[pyfunction]
fn ibm3624_offset_generate(
    pvk: &[u8],
    pin: &str,
    validation_data: &str,
    decimalisation_table: &str,
    check_length: Int,
) -> PyResult<String> {
    pc::ibm3624::offset_generate(
        pvk,
        pin,
        validation_data,
        decimalisation_table,
        check_length.0,
    )
    .map_err(err)
}

#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn ibm3624_verify(
    pin_key: &[u8],
    fmt: Int,
    block: &[u8],
    pan: &str,
    pvk: &[u8],
    offset: &str,
    validation_data: &str,
    decimalisation_table: &str,
    check_length: Int,
) -> PyResult<bool> {
    let f = self::fmt("fmt", fmt)?;
    pc::ibm3624::verify(
        pin_key,
        f,
        block,
        pan,
        pvk,
        offset,
        validation_data,
        decimalisation_table,
        check_length.0,
    )
    .map_err(err)
}

#[pyfunction]
fn cvv_generate(cvk: &[u8], pan: &str, expiry_yymm: &str, service_code: &str) -> PyResult<String> {
    pc::cvv::generate(cvk, pan, expiry_yymm, service_code).map_err(err)
}

#[pyfunction]
fn cvv_verify(
    cvk: &[u8],
    pan: &str,
    expiry_yymm: &str,
    service_code: &str,
    cvv: &str,
) -> PyResult<bool> {
    pc::cvv::verify(cvk, pan, expiry_yymm, service_code, cvv).map_err(err)
}

#[pyfunction]
fn emv_derive_icc_master_key_option_a<'py>(
    py: Python<'py>,
    imk: &[u8],
    pan: &str,
    pan_sequence: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    bytes(
        py,
        pc::emv::derive_icc_master_key_option_a(imk, pan, pan_sequence),
    )
}

#[pyfunction]
fn emv_derive_common_session_key<'py>(
    py: Python<'py>,
    icc_master_key: &[u8],
    atc: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    bytes(py, pc::emv::derive_common_session_key(icc_master_key, atc))
}

#[pyfunction]
fn emv_generate_ac<'py>(
    py: Python<'py>,
    session_key: &[u8],
    data: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    bytes(py, pc::emv::generate_ac(session_key, data))
}

#[pyfunction]
fn emv_verify_ac(session_key: &[u8], data: &[u8], ac: &[u8]) -> PyResult<bool> {
    pc::emv::verify_ac(session_key, data, ac).map_err(err)
}

#[pyfunction]
fn emv_arpc_method1<'py>(
    py: Python<'py>,
    session_key: &[u8],
    arqc: &[u8],
    arc: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    bytes(py, pc::emv::arpc_method1(session_key, arqc, arc))
}

#[pyfunction]
#[pyo3(signature = (session_key, arqc, csu, proprietary_auth_data = b"".as_slice()))]
fn emv_arpc_method2<'py>(
    py: Python<'py>,
    session_key: &[u8],
    arqc: &[u8],
    csu: &[u8],
    proprietary_auth_data: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    bytes(
        py,
        pc::emv::arpc_method2(session_key, arqc, csu, proprietary_auth_data),
    )
}

fn padding(p: Int) -> PyResult<u8> {
    let p = p.0;
    u8::try_from(p).map_err(|_| CryptoError::new_err(format!("padding: {p} is not 1, 2 or 3")))
}

/// `name(key, data, padding=1)`: an ISO 9797-1 MAC, the GIL released for a large input.
macro_rules! mac_functions {
    ($($name:ident: $mac:path;)*) => {$(
        #[pyfunction]
        #[pyo3(signature = (key, data, padding = Int(1)))]
        fn $name<'py>(
            py: Python<'py>,
            key: &[u8],
            data: &[u8],
            padding: Int,
        ) -> PyResult<Bound<'py, PyBytes>> {
            let p = self::padding(padding)?;
            let r = run(py, data.len(), || $mac(key, data, p));
            bytes(py, r)
        }
    )*};
}

mac_functions! {
    mac_iso9797_1_alg1: pc::mac::mac_alg1;
    mac_iso9797_1_alg3: pc::mac::mac_alg3;
}

#[pyfunction]
fn tr31_wrap(kbpk: &[u8], header: &str, key: &[u8]) -> PyResult<String> {
    pc::tr31::wrap(kbpk, header, key).map_err(err)
}

#[pyfunction]
fn tr31_unwrap<'py>(
    py: Python<'py>,
    kbpk: &[u8],
    key_block: &str,
) -> PyResult<(String, Bound<'py, PyBytes>)> {
    let (header, key) = pc::tr31::unwrap(kbpk, key_block).map_err(err)?;
    Ok((header, PyBytes::new(py, &key)))
}

/// Wipes the calling thread's cache of DES/3DES key schedules.
#[pyfunction]
fn clear_key_cache() {
    pc::keycache::clear();
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("CryptoError", m.py().get_type::<CryptoError>())?;
    macro_rules! add {
        ($($f:ident),* $(,)?) => {$(m.add_function(wrap_pyfunction!($f, m)?)?;)*};
    }
    add!(
        des_encrypt_ecb,
        des_decrypt_ecb,
        des_encrypt_cbc,
        des_decrypt_cbc,
        aes_encrypt_ecb,
        aes_decrypt_ecb,
        aes_encrypt_cbc,
        aes_decrypt_cbc,
        key_check_value,
        adjust_key_parity,
        key_parity_is_odd,
        constant_time_eq,
        pin_block_encode,
        pin_block_decode,
        pin_block_encrypt,
        pin_block_translate,
        pin_block_pin_length,
        pvv_generate,
        pvv_verify,
        ibm3624_offset_generate,
        ibm3624_verify,
        cvv_generate,
        cvv_verify,
        emv_derive_icc_master_key_option_a,
        emv_derive_common_session_key,
        emv_generate_ac,
        emv_verify_ac,
        emv_arpc_method1,
        emv_arpc_method2,
        mac_iso9797_1_alg1,
        mac_iso9797_1_alg3,
        tr31_wrap,
        tr31_unwrap,
        clear_key_cache,
    );
    Ok(())
}
