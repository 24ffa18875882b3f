//! Python bindings for the ISO 8583 codec and EMV TLV (`switch-iso8583`).
//!
//! Shaped for the hot path: a spec is compiled once into a frozen `Spec` object, `decode`
//! builds the `dict[int, str | bytes]` directly from borrowed slices of the input (no Python
//! call per field), and `encode` reads `str` values through CPython's cached UTF-8 form
//! without copying. The GIL is held: a message takes about a microsecond, less than what
//! releasing and re-taking the GIL would cost.
use pyo3::create_exception;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use switch_iso8583 as iso;
use switch_iso8583::spec as sp;

create_exception!(
    switch_native,
    Iso8583Error,
    PyValueError,
    "An ISO 8583 message or value that does not fit its spec. Attributes: field (int or None \
     for the MTI, bitmap or whole message), offset (byte offset), part ('mti', 'bitmap', \
     'field', 'message'), reason (what was wrong)."
);
create_exception!(
    switch_native,
    Iso8583DecodeError,
    Iso8583Error,
    "Raised by decode: bytes that are not a valid message."
);
create_exception!(
    switch_native,
    Iso8583EncodeError,
    Iso8583Error,
    "Raised by encode: a message that cannot be written under the spec."
);
create_exception!(
    switch_native,
    SpecError,
    PyValueError,
    "A spec definition that does not make sense."
);
create_exception!(
    switch_native,
    TlvError,
    PyValueError,
    "Malformed BER-TLV. Attributes: offset, reason."
);

fn part_name(loc: iso::Location) -> &'static str {
    match loc {
        iso::Location::Mti => "mti",
        iso::Location::Bitmap => "bitmap",
        iso::Location::Field(_) => "field",
        iso::Location::Message => "message",
    }
}

/// Build the Python exception for a codec error, with its attributes set.
fn codec_err(py: Python<'_>, e: &iso::Error, decoding: bool) -> PyErr {
    let msg = e.to_string();
    let err = if decoding {
        Iso8583DecodeError::new_err(msg)
    } else {
        Iso8583EncodeError::new_err(msg)
    };
    set_attrs(
        py,
        &err,
        e.location.field().map(i64::from),
        e.offset,
        part_name(e.location),
        &e.kind.to_string(),
    );
    err
}

fn set_attrs(
    py: Python<'_>,
    err: &PyErr,
    field: Option<i64>,
    offset: usize,
    part: &str,
    reason: &str,
) {
    let v = err.value(py);
    // Setting attributes on a fresh exception instance cannot fail in practice; if it did,
    // the exception still carries its message.
    let _ = v.setattr("field", field);
    let _ = v.setattr("offset", offset);
    let _ = v.setattr("part", part);
    let _ = v.setattr("reason", reason);
}

/// An encode error about one field that the Rust codec never sees (bad key or value type).
fn field_err(py: Python<'_>, field: Option<i64>, reason: &str) -> PyErr {
    let msg = match field {
        Some(n) => format!("field {n}: {reason} at offset 0"),
        None => format!("message: {reason} at offset 0"),
    };
    let err = Iso8583EncodeError::new_err(msg);
    set_attrs(
        py,
        &err,
        field,
        0,
        if field.is_some() { "field" } else { "message" },
        reason,
    );
    err
}

/// A field definition in spec-file form: (number, kind, encoding, length, prefix, max_len, pad).
type FieldTuple = (
    u8,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    usize,
    &'static str,
);

/// A compiled ISO 8583 spec. Build it once (from `Spec.builtin` or from field definitions) and
/// keep it: decode and encode are methods on it.
#[pyclass(frozen, module = "switch_native", name = "Spec")]
pub struct PySpec {
    inner: iso::Spec,
}

enum DecodeFail {
    Iso(iso::Error),
    Py(PyErr),
}

impl From<iso::Error> for DecodeFail {
    fn from(e: iso::Error) -> Self {
        DecodeFail::Iso(e)
    }
}

impl From<PyErr> for DecodeFail {
    fn from(e: PyErr) -> Self {
        DecodeFail::Py(e)
    }
}

struct DictSink<'py> {
    py: Python<'py>,
    mti: Option<Bound<'py, PyString>>,
    fields: Option<Bound<'py, PyDict>>,
}

extern "C" {
    /// CPython's dict constructor with room for `minused` items: saves the two or three
    /// resizes a ~20-field message would otherwise cost. Private but exported by every CPython
    /// 3 release (3.13 restored it after a removal attempt because Cython, mypyc and orjson
    /// rely on it); if a future CPython drops it, replace this with `PyDict::new`.
    fn _PyDict_NewPresized(minused: pyo3::ffi::Py_ssize_t) -> *mut pyo3::ffi::PyObject;
}

fn new_dict(py: Python<'_>, size: usize) -> PyResult<Bound<'_, PyDict>> {
    // SAFETY: returns a new reference to an empty dict, or NULL with an exception set.
    unsafe {
        let obj = _PyDict_NewPresized(size as pyo3::ffi::Py_ssize_t);
        Ok(Bound::from_owned_ptr_or_err(py, obj)?.cast_into_unchecked())
    }
}

impl iso::Sink for DictSink<'_> {
    type Error = DecodeFail;

    fn mti(&mut self, mti: &str) -> Result<(), DecodeFail> {
        self.mti = Some(PyString::new(self.py, mti));
        Ok(())
    }

    fn begin_fields(&mut self, count: usize) -> Result<(), DecodeFail> {
        self.fields = Some(new_dict(self.py, count)?);
        Ok(())
    }

    fn field(&mut self, number: u8, value: iso::Value<'_>) -> Result<(), DecodeFail> {
        let Some(fields) = &self.fields else {
            return Err(PyErr::new::<PyValueError, _>(
                "decoder produced a field before its bitmap",
            )
            .into());
        };
        match value {
            iso::Value::Text(s) => fields.set_item(number, new_str(self.py, s))?,
            iso::Value::Bytes(b) => fields.set_item(number, PyBytes::new(self.py, b))?,
        }
        Ok(())
    }
}

/// A Python str from decoded text. Nearly every value is ASCII (the codec has already checked
/// it byte by byte), so it is copied straight into a compact ASCII string instead of being
/// decoded again as UTF-8; anything else takes the general path.
fn new_str<'py>(py: Python<'py>, s: &str) -> Bound<'py, PyString> {
    if !s.is_ascii() {
        return PyString::new(py, s);
    }
    // SAFETY: PyUnicode_New(len, 127) returns a fresh compact ASCII string with room for
    // exactly `len` one-byte characters (or NULL on allocation failure, handled below); we
    // fill all of them with ASCII bytes before anyone else can see the object.
    unsafe {
        let obj = pyo3::ffi::PyUnicode_New(s.len() as pyo3::ffi::Py_ssize_t, 127);
        if obj.is_null() {
            pyo3::ffi::PyErr_Clear();
            return PyString::new(py, s);
        }
        let data = pyo3::ffi::PyUnicode_DATA(obj) as *mut u8;
        std::ptr::copy_nonoverlapping(s.as_ptr(), data, s.len());
        Bound::from_owned_ptr(py, obj).cast_into_unchecked()
    }
}

fn spec_err(e: iso::SpecError) -> PyErr {
    SpecError::new_err(e.0)
}

#[pymethods]
impl PySpec {
    /// Compile a spec. `fields` holds (number, kind, encoding, length, prefix, max_len, pad)
    /// with the names of the spec file format (see switch/iso8583/specs/README.md).
    #[new]
    #[allow(clippy::type_complexity)]
    fn new(
        name: &str,
        mti: &str,
        bitmap: &str,
        fields: Vec<(i64, String, String, String, String, usize, String)>,
    ) -> PyResult<Self> {
        let mut defs = Vec::with_capacity(fields.len());
        for (n, kind, enc, len, prefix, max, pad) in fields {
            if !(2..=128).contains(&n) {
                return Err(SpecError::new_err(format!(
                    "field {n}: fields are numbered 2..=128 (1 is the secondary bitmap)"
                )));
            }
            let f = iso::FieldSpec::from_names(&kind, &enc, &len, &prefix, max, &pad)
                .map_err(|e| SpecError::new_err(format!("field {n}: {e}")))?;
            defs.push((n as u8, f));
        }
        let inner = iso::Spec::new(
            name,
            sp::parse_mti(mti).map_err(spec_err)?,
            sp::parse_bitmap(bitmap).map_err(spec_err)?,
            defs,
        )
        .map_err(spec_err)?;
        Ok(PySpec { inner })
    }

    /// A spec compiled into the extension: "ascii87" or "binary87".
    #[staticmethod]
    fn builtin(name: &str) -> PyResult<Self> {
        iso::builtin::builtin(name)
            .map(|inner| PySpec { inner })
            .ok_or_else(|| SpecError::new_err(format!("no built-in spec named {name:?}")))
    }

    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    #[getter]
    fn mti_encoding(&self) -> &'static str {
        sp::mti_name(self.inner.mti)
    }

    #[getter]
    fn bitmap_encoding(&self) -> &'static str {
        sp::bitmap_name(self.inner.bitmap)
    }

    /// Every defined field as (number, kind, encoding, length, prefix, max_len, pad).
    fn fields(&self) -> Vec<FieldTuple> {
        self.inner
            .fields()
            .map(|(n, f)| {
                let (k, e, l, p, m, pad) = f.names();
                (n, k, e, l, p, m, pad)
            })
            .collect()
    }

    /// Whether field `n` holds bytes (binary) rather than str; None if the spec lacks it.
    fn is_binary(&self, n: i64) -> Option<bool> {
        u8::try_from(n)
            .ok()
            .and_then(|n| self.inner.field(n))
            .map(|f| f.kind == sp::Kind::Binary)
    }

    /// Decode one message: (mti, {field number: str | bytes}). The whole of `data` must be the
    /// message. Raises Iso8583DecodeError naming the field, offset and problem.
    fn decode<'py>(
        &self,
        py: Python<'py>,
        data: &[u8],
    ) -> PyResult<(Bound<'py, PyString>, Bound<'py, PyDict>)> {
        decode_parts(&self.inner, py, data)
    }

    /// Encode one message from its MTI and {field number: str | bytes}. Bitmaps are computed.
    /// Raises Iso8583EncodeError naming the field and problem.
    fn encode<'py>(
        &self,
        py: Python<'py>,
        mti: &Bound<'py, PyAny>,
        fields: &Bound<'py, PyDict>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        encode_parts(&self.inner, py, mti, fields)
    }

    /// Decode as far as the first error: (mti or None, {fields decoded before the error},
    /// the error as an Iso8583DecodeError instance, or None when the whole message decodes).
    /// For answering a malformed request with the fields its sender matches answers on.
    fn decode_partial<'py>(&self, py: Python<'py>, data: &[u8]) -> PyResult<Partial<'py>> {
        decode_partial_parts(&self.inner, py, data)
    }

    /// The MTI at the start of `data`, or None if even that cannot be read. For answering a
    /// message that fails to decode with a format error of the right class.
    fn peek_mti(&self, data: &[u8]) -> Option<String> {
        iso::peek_mti(&self.inner, data).ok()
    }

    fn __repr__(&self) -> String {
        format!("Spec({:?})", self.inner.name)
    }
}

fn decode_parts<'py>(
    spec: &iso::Spec,
    py: Python<'py>,
    data: &[u8],
) -> PyResult<(Bound<'py, PyString>, Bound<'py, PyDict>)> {
    let mut sink = DictSink {
        py,
        mti: None,
        fields: None,
    };
    match iso::decode_into(spec, data, &mut sink) {
        Ok(()) => {
            let mti = sink.mti.unwrap_or_else(|| PyString::new(py, ""));
            let fields = sink.fields.unwrap_or_else(|| PyDict::new(py));
            Ok((mti, fields))
        }
        Err(DecodeFail::Iso(e)) => Err(codec_err(py, &e, true)),
        Err(DecodeFail::Py(e)) => Err(e),
    }
}

/// What a partial decode gives Python: the MTI (None if unreadable), the fields decoded
/// before the first error, and that error as an exception instance (None if all decoded).
type Partial<'py> = (
    Option<Bound<'py, PyString>>,
    Bound<'py, PyDict>,
    Option<Bound<'py, PyAny>>,
);

/// `CodecBase.salvage`: the message (None if the MTI is unreadable) and the error.
type Salvaged<'py> = (Option<Bound<'py, PyAny>>, Option<Bound<'py, PyAny>>);

fn decode_partial_parts<'py>(
    spec: &iso::Spec,
    py: Python<'py>,
    data: &[u8],
) -> PyResult<Partial<'py>> {
    let mut sink = DictSink {
        py,
        mti: None,
        fields: None,
    };
    let err = match iso::decode_into(spec, data, &mut sink) {
        Ok(()) => None,
        Err(DecodeFail::Iso(e)) => Some(codec_err(py, &e, true).into_value(py).into_bound(py)),
        Err(DecodeFail::Py(e)) => return Err(e),
    };
    let fields = sink.fields.unwrap_or_else(|| PyDict::new(py));
    Ok((sink.mti, fields, err.map(Bound::into_any)))
}

fn encode_parts<'py>(
    spec: &iso::Spec,
    py: Python<'py>,
    mti: &Bound<'py, PyAny>,
    fields: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyBytes>> {
    let mti = mti
        .cast::<PyString>()
        .map_err(|_| {
            let err = Iso8583EncodeError::new_err("MTI: expects str at offset 0");
            set_attrs(py, &err, None, 0, "mti", "expects str");
            err
        })?
        .to_str()?;
    let mut held: Vec<(u8, Bound<'py, PyAny>)> = Vec::with_capacity(fields.len());
    for (k, v) in fields.iter() {
        let n: i64 = k
            .extract()
            .map_err(|_| field_err(py, None, "field numbers must be int"))?;
        if !(2..=128).contains(&n) {
            let reason = iso::ErrorKind::FieldNumberOutOfRange { number: n }.to_string();
            return Err(field_err(py, Some(n), &reason));
        }
        held.push((n as u8, v));
    }
    let mut values: Vec<(u8, iso::Value<'_>)> = Vec::with_capacity(held.len());
    for (n, v) in &held {
        let value = if let Ok(s) = v.cast::<PyString>() {
            iso::Value::Text(s.to_str()?)
        } else if let Ok(b) = v.cast::<PyBytes>() {
            iso::Value::Bytes(b.as_bytes())
        } else {
            let tname = v.get_type().name()?;
            let reason = format!("expects str or bytes, got {tname}");
            return Err(field_err(py, Some(i64::from(*n)), &reason));
        };
        values.push((*n, value));
    }
    let mut out = Vec::with_capacity(256);
    iso::encode_into(spec, mti, &mut values, &mut out).map_err(|e| codec_err(py, &e, false))?;
    Ok(PyBytes::new(py, &out))
}

/// The base of `switch.iso8583.message.Message`: an MTI (str) and a dict of fields. Native so
/// that the codec creates messages without running Python code; the Python subclass adds the
/// helpers. `mti` is fixed once built, `fields` is an ordinary (mutable) dict.
#[pyclass(subclass, frozen, module = "switch_native", name = "MessageBase")]
pub struct PyMessage {
    mti: Py<PyString>,
    fields: Py<PyDict>,
}

#[pymethods]
impl PyMessage {
    #[new]
    #[pyo3(signature = (mti, fields = None))]
    fn new(mti: Bound<'_, PyString>, fields: Option<Bound<'_, PyDict>>) -> Self {
        let py = mti.py();
        PyMessage {
            fields: fields.unwrap_or_else(|| PyDict::new(py)).unbind(),
            mti: mti.unbind(),
        }
    }

    #[getter]
    fn mti(&self, py: Python<'_>) -> Py<PyString> {
        self.mti.clone_ref(py)
    }

    #[getter]
    fn fields(&self, py: Python<'_>) -> Py<PyDict> {
        self.fields.clone_ref(py)
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let Ok(other) = other.cast::<PyMessage>() else {
            return Ok(py.NotImplemented());
        };
        let other = other.get();
        let same = PyAnyMethods::eq(self.mti.bind(py).as_any(), other.mti.bind(py))?
            && PyAnyMethods::eq(self.fields.bind(py).as_any(), other.fields.bind(py))?;
        Ok(pyo3::types::PyBool::new(py, same)
            .to_owned()
            .into_any()
            .unbind())
    }
}

/// The base of `switch.iso8583.codec.Codec`: a compiled spec and the message class to build.
/// `decode` and `encode` are single native calls with no Python frame in between.
#[pyclass(subclass, frozen, module = "switch_native", name = "CodecBase")]
pub struct PyCodec {
    spec: Py<PySpec>,
    message_class: Py<pyo3::types::PyType>,
}

#[pymethods]
impl PyCodec {
    #[new]
    fn new(
        spec: Bound<'_, PySpec>,
        message_class: Bound<'_, pyo3::types::PyType>,
    ) -> PyResult<Self> {
        if !message_class.is_subclass_of::<PyMessage>()? {
            return Err(PyTypeError::new_err(
                "message_class must subclass MessageBase",
            ));
        }
        Ok(PyCodec {
            spec: spec.unbind(),
            message_class: message_class.unbind(),
        })
    }

    #[getter]
    fn spec(&self, py: Python<'_>) -> Py<PySpec> {
        self.spec.clone_ref(py)
    }

    /// Decode exactly one message into an instance of the message class.
    fn decode<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let spec = &self.spec.get().inner;
        let (mti, fields) = if let Ok(b) = data.cast::<PyBytes>() {
            decode_parts(spec, py, b.as_bytes())?
        } else {
            let b = py.get_type::<PyBytes>().call1((data,))?;
            decode_parts(spec, py, b.cast::<PyBytes>()?.as_bytes())?
        };
        self.message_class.bind(py).call1((mti, fields))
    }

    /// Decode as far as the first error: (message or None, error or None). The message has
    /// the fields decoded before the error (None when even the MTI is unreadable); the error
    /// is an Iso8583DecodeError instance naming the bad element, None when all decodes.
    fn salvage<'py>(&self, py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Salvaged<'py>> {
        let spec = &self.spec.get().inner;
        let (mti, fields, err) = if let Ok(b) = data.cast::<PyBytes>() {
            decode_partial_parts(spec, py, b.as_bytes())?
        } else {
            let b = py.get_type::<PyBytes>().call1((data,))?;
            decode_partial_parts(spec, py, b.cast::<PyBytes>()?.as_bytes())?
        };
        let message = match mti {
            Some(mti) => Some(self.message_class.bind(py).call1((mti, fields))?),
            None => None,
        };
        Ok((message, err))
    }

    /// Encode a message (any MessageBase instance); bitmaps are computed.
    fn encode<'py>(
        &self,
        py: Python<'py>,
        message: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let m = message
            .cast::<PyMessage>()
            .map_err(|_| PyTypeError::new_err("encode expects a Message"))?
            .get();
        encode_parts(
            &self.spec.get().inner,
            py,
            m.mti.bind(py).as_any(),
            m.fields.bind(py),
        )
    }
}

fn tlv_err(py: Python<'_>, e: &iso::tlv::TlvError) -> PyErr {
    let err = TlvError::new_err(e.to_string());
    let v = err.value(py);
    let _ = v.setattr("offset", e.offset);
    let _ = v.setattr("reason", e.reason.as_str());
    err
}

fn tlv_to_py<'py>(py: Python<'py>, nodes: &[iso::tlv::Tlv]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for n in nodes {
        let children = match &n.children {
            Some(c) => tlv_to_py(py, c)?.into_any(),
            None => py.None().into_bound(py),
        };
        let item = PyTuple::new(
            py,
            [
                n.tag.into_pyobject(py)?.into_any(),
                PyBytes::new(py, &n.value).into_any(),
                children,
            ],
        )?;
        list.append(item)?;
    }
    Ok(list)
}

fn tlv_from_py(obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Vec<iso::tlv::Tlv>> {
    if depth > iso::tlv::MAX_DEPTH {
        return Err(TlvError::new_err(format!(
            "TLV: nesting deeper than {}",
            iso::tlv::MAX_DEPTH
        )));
    }
    let mut out = Vec::new();
    for item in obj.try_iter()? {
        let item = item?;
        let tag: u32 = item
            .getattr("tag")?
            .extract()
            .map_err(|_| PyTypeError::new_err("TLV tag must be an int in 0..2**32"))?;
        let value: Vec<u8> = item
            .getattr("value")?
            .cast::<PyBytes>()
            .map_err(|_| PyTypeError::new_err("TLV value must be bytes"))?
            .as_bytes()
            .to_vec();
        let children = item.getattr("children")?;
        let children = if children.is_none() {
            None
        } else {
            Some(tlv_from_py(&children, depth + 1)?)
        };
        out.push(iso::tlv::Tlv {
            tag,
            value,
            children,
        });
    }
    Ok(out)
}

/// Parse BER-TLV into nested (tag, value, children | None) tuples.
#[pyfunction]
fn tlv_parse<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyList>> {
    let nodes = iso::tlv::parse(data).map_err(|e| tlv_err(py, &e))?;
    tlv_to_py(py, &nodes)
}

/// Build BER-TLV from objects with `tag`, `value` and `children` attributes (children None
/// for a primitive, else an iterable of such objects used instead of `value`).
#[pyfunction]
fn tlv_build<'py>(py: Python<'py>, nodes: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let nodes = tlv_from_py(nodes, 0)?;
    let out = iso::tlv::build(&nodes).map_err(|e| tlv_err(py, &e))?;
    Ok(PyBytes::new(py, &out))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<PySpec>()?;
    m.add_class::<PyMessage>()?;
    m.add_class::<PyCodec>()?;
    m.add("Iso8583Error", py.get_type::<Iso8583Error>())?;
    m.add("Iso8583DecodeError", py.get_type::<Iso8583DecodeError>())?;
    m.add("Iso8583EncodeError", py.get_type::<Iso8583EncodeError>())?;
    m.add("SpecError", py.get_type::<SpecError>())?;
    m.add("TlvError", py.get_type::<TlvError>())?;
    m.add_function(wrap_pyfunction!(tlv_parse, m)?)?;
    m.add_function(wrap_pyfunction!(tlv_build, m)?)?;
    Ok(())
}
