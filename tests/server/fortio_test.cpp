// fortio's echo grammar (server/src/routes/fortio.hpp): durations as Go writes them, distributions,
// chances, headers, and every bad value named in its error; the per-thread generator's draws.
#include <cmath>
#include <map>
#include <string>

#include <doctest/doctest.h>

#include "routes/fortio.hpp"

using namespace std::chrono_literals;
namespace fortio = bufpool::server::routes::fortio;

namespace {

std::string error_of(std::string_view query) {
  fortio::params p;
  std::string e;
  if (fortio::parse(query, p, e)) return "no error";
  return e;
}

}  // namespace

TEST_CASE("fortio: durations as Go's time.ParseDuration reads them") {
  CHECK(fortio::parse_duration("0") == 0ns);
  CHECK(fortio::parse_duration("150us") == 150us);
  CHECK(fortio::parse_duration("150\xc2\xb5s") == 150us);  // U+00B5 micro sign
  CHECK(fortio::parse_duration("150\xce\xbcs") == 150us);  // U+03BC Greek mu
  CHECK(fortio::parse_duration("2ms") == 2ms);
  CHECK(fortio::parse_duration("0.5s") == 500ms);
  CHECK(fortio::parse_duration(".5s") == 500ms);
  CHECK(fortio::parse_duration("1.5ms") == 1500us);
  CHECK(fortio::parse_duration("1m30s") == 90s);
  CHECK(fortio::parse_duration("1h2m3s4ms5us6ns") == 1h + 2min + 3s + 4ms + 5us + 6ns);
  CHECK(fortio::parse_duration("+1s") == 1s);
  CHECK(fortio::parse_duration("10ns") == 10ns);
  for (const char* bad : {"", "-1s", "5x", "5", "s", ".s", "1.5", "1s2", "1 s", "1S", "3000000h"}) {
    CAPTURE(bad);
    CHECK_FALSE(fortio::parse_duration(bad).has_value());
  }
}

TEST_CASE("fortio: one value always, a list of value:percent by chance, the rest the default") {
  fortio::params p;
  std::string e;
  REQUIRE(fortio::parse("status=503", p, e));
  CHECK(p.any);
  CHECK(p.status.pick(0.0) == 503u);
  CHECK(p.status.pick(99.999) == 503u);
  REQUIRE(fortio::parse("delay=150us:10,2ms:5,0.5s:1&status=404:10,503:5,429:1&size=1024:10,512:5", p, e));
  CHECK(p.delay.count == 3);
  CHECK(p.delay.pick(5) == 150us);
  CHECK(p.delay.pick(12) == 2ms);
  CHECK(p.delay.pick(15.5) == 500ms);
  CHECK_FALSE(p.delay.pick(16).has_value());  // the default: no delay
  CHECK(p.status.pick(9.99) == 404u);
  CHECK(p.status.pick(14) == 503u);
  CHECK(p.status.pick(15.2) == 429u);
  CHECK_FALSE(p.status.pick(50).has_value());
  CHECK(p.size.pick(10.5) == std::size_t{512});
  CHECK_FALSE(p.size.pick(15).has_value());
  REQUIRE(fortio::parse("close=5.3&gzip=true", p, e));
  CHECK(p.close == doctest::Approx(5.3));
  CHECK(p.gzip == 100);
  REQUIRE(fortio::parse("close=true&gzip=false", p, e));
  CHECK(p.close == 100);
  CHECK(p.gzip == 0);
  REQUIRE(fortio::parse("status=200:33.3,500:66.7", p, e));  // decimals that add up to 100
}

TEST_CASE("fortio: headers repeat, are percent-decoded, and unknown parameters are ignored") {
  fortio::params p;
  std::string e;
  REQUIRE(fortio::parse("header=Foo:Bar&x=1&header=X-Y:%20a+b%3Ac&&novalue&header=Empty:", p, e));
  REQUIRE(p.header_count == 3);
  CHECK(p.headers[0].name == "Foo");
  CHECK(p.headers[0].value == "Bar");
  CHECK(p.headers[1].name == "X-Y");
  CHECK(p.headers[1].value == "a b:c");  // leading space trimmed, '+' a space, %3A a colon
  CHECK(p.headers[2].name == "Empty");
  CHECK(p.headers[2].value.empty());
  REQUIRE(fortio::parse("foo=bar&x", p, e));
  CHECK_FALSE(p.any);  // only unknown parameters: the defaults apply
  REQUIRE(fortio::parse("", p, e));
  CHECK_FALSE(p.any);
  REQUIRE(fortio::parse("delay=150%C2%B5s", p, e));  // the micro sign, percent-encoded
  CHECK(p.delay.pick(0) == 150us);
}

TEST_CASE("fortio: every bad value is named with the parameter and what is wrong") {
  const std::map<std::string, std::string> cases = {
      {"status=abc", "status=abc: not a status code (100 to 599)"},
      {"status=99", "status=99: not a status code"},
      {"status=600", "status=600: not a status code"},
      {"status=503:5,,404:1", "status=503:5,,404:1: an empty item in the list"},
      {"status=503:60,404:50", "the chances add up to more than 100 percent"},
      {"status=503:-1", "a chance is not a percent"},
      {"status=503:abc", "a chance is not a percent"},
      {"delay=-1s", "delay=-1s: not a duration"},
      {"delay=5x", "delay=5x: not a duration"},
      {"size=-3", "size=-3: not a size in bytes"},
      {"size=1e99", "size=1e99: not a size in bytes"},
      {"size=99999999999999999999999", "not a size in bytes"},
      {"close=maybe", "close=maybe: not true, false or a percent"},
      {"gzip=101", "gzip=101: not true, false or a percent"},
      {"header=Foo", "header=Foo: not Name:Value"},
      {"header=:v", "the header name is empty"},
      {"header=Fo%20o:v", "the header name is not a token"},
      {"header=Foo:a%0D%0AX-Injected:1", "the header value holds CR, LF or NUL"},
      {"header=Foo:a%0Ab", "the header value holds CR, LF or NUL"},
      {"header=Foo:a%00b", "the header value holds CR, LF or NUL"},
      {"status=%zz", "status=%zz: not valid percent-encoding"},
      {"status=5%2", "not valid percent-encoding"},
  };
  for (const auto& [query, expected] : cases) {
    CAPTURE(query);
    CHECK(error_of(query).find(expected) != std::string::npos);
  }
  std::string many;
  for (int i = 0; i < 33; ++i) many += "header=H" + std::to_string(i) + ":v&";
  CHECK(error_of(many).find("more than 32 header parameters") != std::string::npos);
  std::string list = "size=";
  for (int i = 0; i < 17; ++i) list += std::to_string(i) + ":1,";
  list.pop_back();
  CHECK(error_of(list).find("more than 16 values") != std::string::npos);
}

TEST_CASE("fortio: the per-thread draws lie from 0 to under 100, each outcome within four standard deviations") {
  // 10,000 draws through a distribution like status=404:10,503:5,429:1 (the rest: the default).
  fortio::params p;
  std::string e;
  REQUIRE(fortio::parse("status=404:10,503:5,429:1", p, e));
  constexpr int n = 10000;
  std::map<unsigned, int> seen;
  for (int i = 0; i < n; ++i) {
    const double d = fortio::draw();
    REQUIRE(d >= 0.0);
    REQUIRE(d < 100.0);
    ++seen[p.status.pick(d).value_or(200u)];
  }
  for (const auto& [status, percent] : std::map<unsigned, double>{{404, 10}, {503, 5}, {429, 1}, {200, 84}}) {
    const double q = percent / 100, mean = n * q, sd = std::sqrt(n * q * (1 - q));
    CAPTURE(status);
    CAPTURE(seen[status]);
    CHECK(std::abs(seen[status] - mean) <= 4 * sd);
  }
}
