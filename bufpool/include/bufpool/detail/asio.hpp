// Which Asio the library uses: standalone Asio (namespace asio, <asio/...>) or Boost.Asio (namespace
// boost::asio, <boost/asio/...>), chosen by the embedder. Define BUFPOOL_USE_BOOST_ASIO (or
// BUFPOOL_USE_STANDALONE_ASIO) to choose; without either, standalone Asio is used when <asio.hpp> is
// found, else Boost.Asio. The library names it bufpool::net. Only the buffer types are included here
// (rotation_timer.hpp includes what it needs itself), so that buffer.hpp stays light.
#pragma once

#if !defined(BUFPOOL_USE_BOOST_ASIO) && !defined(BUFPOOL_USE_STANDALONE_ASIO)
#if __has_include(<asio.hpp>)
#define BUFPOOL_USE_STANDALONE_ASIO 1
#elif __has_include(<boost/asio.hpp>)
#define BUFPOOL_USE_BOOST_ASIO 1
#else
#error "bufpool needs Asio: standalone (libasio-dev) or Boost.Asio (libboost-dev)"
#endif
#endif

#if defined(BUFPOOL_USE_BOOST_ASIO)
#include <boost/asio/buffer.hpp>
#include <boost/system/error_code.hpp>
namespace bufpool {
namespace net = ::boost::asio;
/// The error code type of the Asio in use.
using net_error_code = ::boost::system::error_code;
}
#else
#include <asio/buffer.hpp>
#include <system_error>
namespace bufpool {
namespace net = ::asio;
/// The error code type of the Asio in use.
using net_error_code = ::std::error_code;
}
#endif
