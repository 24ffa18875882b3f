# Declarations of the compiled limits engine, so other Cython modules can cimport it.
from libc.stdint cimport int32_t, int64_t


cdef class LimitsEngine:
    cdef readonly int n_categories
    cdef int32_t _day
    cdef Py_ssize_t _n_slots
    cdef int32_t[::1] _index
    cdef int32_t[::1] _slot_card
    cdef int64_t[::1] _amount
    cdef int32_t[::1] _count

    cdef Py_ssize_t _lookup(self, int64_t card) noexcept nogil
    cdef Py_ssize_t _allocate(self, int64_t card) except -1
    cdef int _grow_index(self, int64_t need) except -1
    cdef int _grow_slots(self) except -1
    cdef void _roll(self, int32_t day) noexcept nogil
