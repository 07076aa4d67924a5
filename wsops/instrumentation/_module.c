/* wsops.instrumentation._counting: the module, made of the ``Counts`` type (_counting.c) and
 * the node observer's compiled hooks (_hooks.c). setup.py builds it, optionally. */
#include "_counting.h"

static PyObject *perf_counter(PyObject *module, PyObject *unused)
{
    double now;
    if (perf_now(&now) < 0)
        return NULL;
    return PyFloat_FromDouble(now);
}

static PyMethodDef module_methods[] = {
    {"perf_counter", perf_counter, METH_NOARGS,
     "The clock ``observe_since`` reads (``time.perf_counter``'s)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "wsops.instrumentation._counting",
    "A histogram's counts kept in C, and the node observer's hooks (see "
    "wsops/instrumentation/pycounts.py and wsops/server/observe.py).", -1, module_methods,
};

PyMODINIT_FUNC PyInit__counting(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (add_counts(m) < 0 || add_hooks(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
