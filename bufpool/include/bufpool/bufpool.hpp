// The whole public API of the bufpool library.
#pragma once

#include "allocator.hpp"
#include "buffer.hpp"
#include "byte_queue.hpp"
#include "chain.hpp"
#include "chunk_resource.hpp"
#include "io.hpp"
#include "options.hpp"
#include "pool.hpp"
#include "rotation_timer.hpp"
#include "stats.hpp"
#include <bufpool/version.hpp>
