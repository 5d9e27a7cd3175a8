// The tensor arena, in its own file so it alone is rebuilt for another size: the C package's own
// kTensorArenaSize as it ships, unless the build measures with EDGESLIM_ARENA_SIZE.
#include <cstddef>
#include <cstdint>

#include "model_data.h"

#ifndef EDGESLIM_ARENA_SIZE
#define EDGESLIM_ARENA_SIZE kTensorArenaSize
#endif

alignas(16) uint8_t tensor_arena[EDGESLIM_ARENA_SIZE];
extern const size_t tensor_arena_size = sizeof(tensor_arena);
