/* gossamer.proxy._heap: how much of the C heap is free, giving its free pages back, and
 * glibc's two thresholds that decide when it gives them back by itself.
 *
 * The proxy's one hand-written extension, built with the mypyc modules by
 * scripts/build_native.py (proxy/heap.py says when it is called, and why).
 * glibc keeps the pages of freed chunks mapped: after a burst of large
 * bodies the heap holds a megabyte or more that no object uses, and the
 * kernel counts it in the proxy's RSS until malloc_trim hands it back
 * (MADV_DONTNEED on every free page, not only at the heap's top).
 * ctypes could call the same functions, but importing it costs a proxy
 * about 0.4 MiB, which is what this is here to save. Other C libraries
 * (musl) have none of them: free_bytes() says 0 there, so nothing is trimmed,
 * and tune() says False.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
#include <malloc.h>
#define HAVE_TRIM 1
#endif

static PyObject *free_bytes(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
#ifdef HAVE_TRIM
    struct mallinfo2 info = mallinfo2();
    return PyLong_FromSize_t(info.fordblks);
#else
    return PyLong_FromLong(0);
#endif
}

static PyObject *trim(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
#ifdef HAVE_TRIM
    return PyBool_FromLong(malloc_trim(0));
#else
    Py_RETURN_FALSE;
#endif
}

static PyObject *tune(PyObject *module, PyObject *args) {
    int trim_threshold, mmap_threshold;
    (void)module;
    if (!PyArg_ParseTuple(args, "ii", &trim_threshold, &mmap_threshold)) {
        return NULL;
    }
#ifdef HAVE_TRIM
    return PyBool_FromLong(mallopt(M_TRIM_THRESHOLD, trim_threshold) &&
                           mallopt(M_MMAP_THRESHOLD, mmap_threshold));
#else
    Py_RETURN_FALSE;
#endif
}

static PyMethodDef methods[] = {
    {"free_bytes", free_bytes, METH_NOARGS,
     "Bytes of the C heap in free chunks (mallinfo2's fordblks); 0 where unknown."},
    {"trim", trim, METH_NOARGS,
     "Give the heap's free pages back to the kernel (malloc_trim(0)); whether any went."},
    {"tune", tune, METH_VARARGS,
     "tune(trim_threshold, mmap_threshold): glibc's M_TRIM_THRESHOLD and M_MMAP_THRESHOLD "
     "(mallopt); whether both were taken."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "gossamer.proxy._heap", NULL, 0, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__heap(void) { return PyModule_Create(&module); }
