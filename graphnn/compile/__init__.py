"""From a graph to kernels: ``plan`` lowers, ``cpu`` generates the Numba module."""
