/* kmem._core: the compiled core of kmem (see kmem_core.h for the design). */
#include "kmem_core.h"

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "kmem._core",
    .m_doc = "kmem's compiled hot paths, over the buffers of the pure-Python classes.",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    if (PyType_Ready(&kmem_BuddyZoneType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&core_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "BuddyZone", (PyObject *)&kmem_BuddyZoneType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
