// The whole of the Asio the library was built with (standalone or Boost; see detail/asio.hpp), for
// tests that use sockets and io_contexts: they name it net::, so the same tests build both ways.
#pragma once

#include <type_traits>

#include <bufpool/detail/asio.hpp>

#if defined(BUFPOOL_USE_BOOST_ASIO)
#include <boost/asio.hpp>
#else
#include <asio.hpp>
#endif

namespace net = bufpool::net;

#if defined(BUFPOOL_USE_BOOST_ASIO)
static_assert(std::is_same_v<net::io_context, boost::asio::io_context>, "built against Boost.Asio");
#else
static_assert(std::is_same_v<net::io_context, ::asio::io_context>, "built against standalone Asio");
#endif
