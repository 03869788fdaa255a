// The whole public API of the bufpool library.
#pragma once

#include "buffer.hpp"
#include "chunk_resource.hpp"
#include "options.hpp"
#include "pool.hpp"
#include "rotation_timer.hpp"
#include "stats.hpp"
#include <bufpool/version.hpp>
