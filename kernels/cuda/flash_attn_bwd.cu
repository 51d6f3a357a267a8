#include "lmf_attention.cuh"
