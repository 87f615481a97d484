// Precompiled header: torch/torch.h dominates compile time, so every translation
// unit shares one parsed copy of it.
#pragma once
#include <torch/torch.h>
