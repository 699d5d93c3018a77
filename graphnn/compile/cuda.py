"""CUDA backend (not built yet): device="cuda" raises a clear error for now."""


class CudaBackend:
    device = "cuda"

    def __init__(self, plan, optimizer, dtype):
        raise ValueError("device='cuda' is not available in this version of graphnn "
                         "(the GPU backend is not built yet); use device='cpu'")
