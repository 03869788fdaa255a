// Implementation of the layered configuration: parsing of values, the four layers, and the errors.
#include "bufpool/config/config.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>

#include <CLI/CLI.hpp>

extern char** environ;

namespace bufpool::config {

namespace {

std::string join_lines(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : "\n") + s;
  return out;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// "5k" -> 5000, "2M" -> 2000000, "1G": the multiplier of a trailing k/M/G, and the text before it.
std::pair<std::string_view, std::int64_t> split_multiplier(std::string_view s) {
  if (s.size() > 1) {
    switch (s.back()) {
      case 'k': case 'K': return {s.substr(0, s.size() - 1), 1000};
      case 'M': return {s.substr(0, s.size() - 1), 1000000};
      case 'G': return {s.substr(0, s.size() - 1), 1000000000};
      default: break;
    }
  }
  return {s, 1};
}

std::optional<std::int64_t> parse_int(std::string_view text) {
  const auto [s, mult] = split_multiplier(text);
  if (mult != 1) {  // "1.5k" is a whole number too
    char* end = nullptr;
    const std::string tmp(s);
    const double d = std::strtod(tmp.c_str(), &end);
    if (tmp.empty() || end != tmp.c_str() + tmp.size() || !std::isfinite(d)) return std::nullopt;
    const double v = d * static_cast<double>(mult);
    if (v != std::floor(v) || std::fabs(v) > 9e18) return std::nullopt;
    return static_cast<std::int64_t>(v);
  }
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

std::optional<double> parse_double(std::string_view text) {
  const auto [s, mult] = split_multiplier(text);
  if (s.empty()) return std::nullopt;
  std::string tmp(s);
  char* end = nullptr;
  const double v = std::strtod(tmp.c_str(), &end);
  if (end != tmp.c_str() + tmp.size() || !std::isfinite(v)) return std::nullopt;
  return v * static_cast<double>(mult);
}

const char* kind_name(value_kind k) {
  switch (k) {
    case value_kind::boolean: return "a boolean (true/false)";
    case value_kind::integer: return "an integer";
    case value_kind::number: return "a number";
    case value_kind::string: return "a string";
    case value_kind::duration: return "a duration such as 500ms, 10s, 2m";
    case value_kind::endpoint: return "HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080";
    case value_kind::choice: return "one of";
    case value_kind::string_list: return "a list of strings";
  }
  return "?";
}

// What --help shows after a flag's name.
const char* type_name(const setting& s) {
  switch (s.kind) {
    case value_kind::boolean: return "";
    case value_kind::integer: return "N";
    case value_kind::number: return "X";
    case value_kind::string: return "TEXT";
    case value_kind::duration: return "DURATION";
    case value_kind::endpoint: return "HOST:PORT";
    case value_kind::choice: return "CHOICE";
    case value_kind::string_list: return "TEXT ...";
  }
  return "";
}

std::string allowed_text(const setting& s) {
  std::string t = kind_name(s.kind);
  if (s.kind == value_kind::choice) {
    for (std::size_t i = 0; i < s.choices.size(); ++i) t += (i ? ", " : " ") + s.choices[i];
  }
  if (s.kind == value_kind::integer && (s.min != std::numeric_limits<std::int64_t>::min() ||
                                        s.max != std::numeric_limits<std::int64_t>::max()))
    t += " in [" + std::to_string(s.min) + ", " + std::to_string(s.max) + "]";
  if (s.kind == value_kind::duration && (s.min != std::numeric_limits<std::int64_t>::min() ||
                                         s.max != std::numeric_limits<std::int64_t>::max()))
    t += " in [" + format_duration(std::chrono::microseconds(s.min)) + ", " +
         format_duration(std::chrono::microseconds(s.max)) + "]";
  if (s.allow_empty) t += " (or \"\" for off)";
  return t;
}

// Converts `raw` (a JSON value from the file, or a string from env/flags) into the canonical JSON
// value of setting `s`; nullopt if it does not fit.
std::optional<nlohmann::json> convert(const setting& s, const nlohmann::json& raw) {
  const bool is_text = raw.is_string();
  const std::string text = is_text ? raw.get<std::string>() : std::string();
  switch (s.kind) {
    case value_kind::boolean: {
      if (raw.is_boolean()) return raw;
      if (!is_text) return std::nullopt;
      const std::string l = lower(text);
      if (l == "true" || l == "1" || l == "yes" || l == "on") return true;
      if (l == "false" || l == "0" || l == "no" || l == "off") return false;
      return std::nullopt;
    }
    case value_kind::integer: {
      std::optional<std::int64_t> v;
      if (raw.is_number_integer()) v = raw.get<std::int64_t>();
      else if (is_text) v = parse_int(text);
      if (!v || *v < s.min || *v > s.max) return std::nullopt;
      return *v;
    }
    case value_kind::number: {
      std::optional<double> v;
      if (raw.is_number()) v = raw.get<double>();
      else if (is_text) v = parse_double(text);
      if (!v || *v < static_cast<double>(s.min) || *v > static_cast<double>(s.max)) return std::nullopt;
      return *v;
    }
    case value_kind::string:
      if (!is_text || (text.empty() && !s.allow_empty)) return std::nullopt;
      return raw;
    case value_kind::duration: {
      std::optional<std::chrono::microseconds> d;
      if (raw.is_number()) {
        const double secs = raw.get<double>();
        if (secs >= 0 && std::isfinite(secs)) d = std::chrono::microseconds(static_cast<std::int64_t>(secs * 1e6));
      } else if (is_text) {
        d = parse_duration(text);
      }
      if (!d || d->count() < s.min || d->count() > s.max) return std::nullopt;
      return format_duration(*d);
    }
    case value_kind::endpoint:
      if (!is_text) return std::nullopt;
      if (text.empty()) return s.allow_empty ? std::optional<nlohmann::json>(raw) : std::nullopt;
      if (!parse_endpoint(text)) return std::nullopt;
      return raw;
    case value_kind::choice:
      if (!is_text || std::find(s.choices.begin(), s.choices.end(), text) == s.choices.end()) return std::nullopt;
      return raw;
    case value_kind::string_list: {
      nlohmann::json out = nlohmann::json::array();
      if (raw.is_array()) {
        for (const auto& e : raw) {
          if (!e.is_string()) return std::nullopt;
          out.push_back(e);
        }
      } else if (is_text) {  // the environment: one item per line
        std::istringstream in(text);
        for (std::string line; std::getline(in, line);)
          if (!line.empty()) out.push_back(line);
      } else {
        return std::nullopt;
      }
      return out;
    }
  }
  return std::nullopt;
}

nlohmann::json::json_pointer pointer_of(std::string_view path) {
  std::string p = "/";
  for (char c : path) p += (c == '.') ? '/' : c;
  return nlohmann::json::json_pointer(p);
}

// Applies one layer's value for `s`, or records the problem.
void apply(const setting& s, const nlohmann::json& raw, const std::string& origin, nlohmann::json& values,
           std::vector<std::string>& problems) {
  if (auto v = convert(s, raw)) {
    values[pointer_of(s.path)] = *v;
  } else {
    // dump() replaces invalid UTF-8 (a flag's bytes are not checked) instead of throwing.
    problems.push_back("config: " + s.path + " = " + raw.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
                       " (from " + origin + ") is invalid: expected " +
                       allowed_text(s));
  }
}

// Walks a JSON file's tree and applies each leaf.
void apply_file(const schema& sc, const nlohmann::json& node, const std::string& prefix, const std::string& origin,
                nlohmann::json& values, std::vector<std::string>& problems) {
  for (auto it = node.begin(); it != node.end(); ++it) {
    const std::string path = prefix.empty() ? it.key() : prefix + "." + it.key();
    if (const setting* s = sc.find(path)) {
      apply(*s, it.value(), origin, values, problems);
    } else if (it.value().is_object()) {
      // A section: known if some setting lives under it.
      const bool known = std::any_of(sc.settings().begin(), sc.settings().end(),
                                     [&](const setting& x) { return x.path.rfind(path + ".", 0) == 0; });
      if (known) {
        apply_file(sc, it.value(), path, origin, values, problems);
      } else {
        const std::string hint = sc.suggest(path);
        problems.push_back("config: unknown key \"" + path + "\" (from " + origin + ")" +
                           (hint.empty() ? "" : "; did you mean \"" + hint + "\"?"));
      }
    } else {
      const std::string hint = sc.suggest(path);
      problems.push_back("config: unknown key \"" + path + "\" (from " + origin + ")" +
                         (hint.empty() ? "" : "; did you mean \"" + hint + "\"?"));
    }
  }
}

}  // namespace

error::error(const std::vector<std::string>& problems) : std::runtime_error(join_lines(problems)), problems_(problems) {}

schema& schema::add(setting s) {
  if (find(s.path) != nullptr) throw std::logic_error("config: duplicate setting " + s.path);
  settings_.push_back(std::move(s));
  return *this;
}

const setting* schema::find(std::string_view path) const noexcept {
  for (const auto& s : settings_)
    if (s.path == path) return &s;
  return nullptr;
}

std::string schema::suggest(std::string_view path) const {
  std::string best;
  std::size_t best_d = std::numeric_limits<std::size_t>::max();
  const std::string l = lower(path);
  for (const auto& s : settings_) {
    const std::size_t d = edit_distance(l, s.path);
    if (d < best_d) {
      best_d = d;
      best = s.path;
    }
  }
  return best_d <= std::max<std::size_t>(2, path.size() / 3) ? best : std::string();
}

std::string schema::env_name(std::string_view path) const {
  std::string n = env_prefix_;
  for (char c : path) n += (c == '.' || c == '-') ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return n;
}

nlohmann::json schema::defaults() const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& s : settings_) j[pointer_of(s.path)] = s.default_value;
  return j;
}

load_result load(const schema& sc, int argc, const char* const* argv, const std::map<std::string, std::string>& env,
                 const std::vector<std::string>& positional) {
  load_result result;
  std::vector<std::string> problems;
  nlohmann::json values = sc.defaults();

  // Flags are parsed first (to find --config), and applied last.
  CLI::App app{sc.program() + ": every setting is also a JSON key and an environment variable", sc.program()};
  std::string config_file;
  bool print_config = false;
  app.add_option("--config", config_file, "JSON configuration file");
  app.add_flag("--print-config", print_config, "print the effective configuration as JSON and exit");
  bool print_version = false;
  if (!sc.version().empty()) app.add_flag("--version", print_version, "print the version and exit");
  std::map<std::string, std::string> flag_values;
  std::map<std::string, std::vector<std::string>> list_values;
  std::map<std::string, CLI::Option*> flag_options;
  for (const auto& s : sc.settings()) {
    // Short aliases first, then the long ones; "--" + path only when no alias spells it already.
    std::string names;
    for (const auto& a : s.aliases)
      if (a.rfind("--", 0) != 0) names += (names.empty() ? "" : ",") + a;
    if (std::find(s.aliases.begin(), s.aliases.end(), "--" + s.path) == s.aliases.end())
      names += (names.empty() ? "" : ",") + ("--" + s.path);
    for (const auto& a : s.aliases)
      if (a.rfind("--", 0) == 0) names += (names.empty() ? "" : ",") + a;
    std::string help = s.help + " [" + sc.env_name(s.path) + "] (default " + s.default_value.dump() + ")";
    CLI::Option* opt = nullptr;
    if (s.kind == value_kind::boolean) {
      // A boolean is a flag: "--quiet" alone means true, "--quiet=false" says so. The last one wins.
      opt = app.add_flag(names, flag_values[s.path], help);
      opt->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    } else if (s.kind == value_kind::string_list) {
      opt = app.add_option(names, list_values[s.path], help + " (repeatable)");  // each one adds an item
      opt->allow_extra_args(false);
    } else {
      opt = app.add_option(names, flag_values[s.path], help);
      opt->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    }
    if (*type_name(s) != '\0') opt->type_name(type_name(s));
    flag_options[s.path] = opt;
  }
  // Positional arguments: each takes one value, except a last one named "NAME..." that takes the rest.
  std::vector<std::vector<std::string>> pos_values(positional.size());
  for (std::size_t i = 0; i < positional.size(); ++i) {
    const bool rest = positional[i].size() > 3 && positional[i].ends_with("...");
    const std::string name = rest ? positional[i].substr(0, positional[i].size() - 3) : positional[i];
    CLI::Option* o = app.add_option(name, pos_values[i], name);
    if (!rest) o->expected(1);
  }
  try {
    std::vector<std::string> args;
    for (int i = argc - 1; i >= 1; --i) args.emplace_back(argv[i]);  // CLI11 takes them reversed
    app.parse(args);
  } catch (const CLI::CallForHelp&) {
    result.exit = true;
    result.output = app.help();
    return result;
  } catch (const CLI::ExtrasError& e) {
    std::string msg = "config: " + std::string(e.what());
    for (const auto& extra : app.remaining()) {
      if (extra.rfind("--", 0) != 0) continue;
      const std::string key = extra.substr(2, extra.find('=') == std::string::npos ? std::string::npos : extra.find('=') - 2);
      const std::string hint = sc.suggest(key);
      if (!hint.empty()) msg += "; did you mean --" + hint + "?";
    }
    throw error({msg});
  } catch (const CLI::ParseError& e) {
    throw error({"config: " + std::string(e.what())});
  }
  if (print_version) {
    result.exit = true;
    result.output = sc.program() + " " + sc.version() + "\n";
    return result;
  }

  // File.
  if (!config_file.empty()) {
    std::ifstream in(config_file);
    if (!in) throw error({"config: cannot read --config file \"" + config_file + "\""});
    nlohmann::json file;
    try {
      file = nlohmann::json::parse(in, nullptr, true, /*ignore_comments=*/true);
    } catch (const nlohmann::json::parse_error& e) {
      throw error({"config: " + config_file + " is not valid JSON: " + e.what()});
    }
    if (!file.is_object()) throw error({"config: " + config_file + " must hold a JSON object"});
    apply_file(sc, file, "", "file " + config_file, values, problems);
  }

  // Environment.
  const std::string prefix = sc.env_name("");
  for (const auto& [name, value] : env) {
    if (name.rfind(prefix, 0) != 0) continue;
    const setting* match = nullptr;
    for (const auto& s : sc.settings())
      if (sc.env_name(s.path) == name) match = &s;
    if (match != nullptr) {
      apply(*match, value, "environment " + name, values, problems);
    } else {
      std::string key = lower(name.substr(prefix.size()));
      std::replace(key.begin(), key.end(), '_', '.');
      const std::string hint = sc.suggest(key);
      // A warning, not an error: the environment is shared (Kubernetes injects BUFPOOL_PORT,
      // BUFPOOL_SERVICE_HOST, ... into every pod of a namespace with a Service named "bufpool").
      // Unknown flags and unknown keys in a file stay errors.
      result.warnings.push_back("config: unknown environment variable " + name + " ignored" +
                                (hint.empty() ? "" : "; did you mean " + sc.env_name(hint) + "?"));
    }
  }

  // Flags.
  for (const auto& s : sc.settings()) {
    if (flag_options[s.path]->count() == 0) continue;
    if (s.kind == value_kind::string_list) {
      apply(s, nlohmann::json(list_values[s.path]), "flag --" + s.path, values, problems);
      continue;
    }
    std::string v = flag_values[s.path];
    if (s.kind == value_kind::boolean && v.empty()) v = "true";
    apply(s, v, "flag --" + s.path, values, problems);
  }

  if (!problems.empty()) throw error(problems);
  for (const auto& vals : pos_values)
    for (const auto& v : vals)
      if (!v.empty()) result.positional.push_back(v);
  result.values = std::move(values);
  if (print_config) {
    result.exit = true;
    result.output = result.values.dump(2) + "\n";
  }
  return result;
}

std::map<std::string, std::string> process_environment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view kv(*e);
    const auto eq = kv.find('=');
    if (eq != std::string_view::npos) env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  return env;
}

const nlohmann::json& at(const nlohmann::json& values, std::string_view path) { return values.at(pointer_of(path)); }

std::optional<std::chrono::microseconds> parse_duration(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  const auto number = parse_double(text.substr(0, i));
  if (!number || *number < 0) return std::nullopt;
  const std::string_view unit = text.substr(i);
  double us_per_unit = 0;
  if (unit.empty() || unit == "s") us_per_unit = 1e6;
  else if (unit == "ms") us_per_unit = 1e3;
  else if (unit == "us") us_per_unit = 1;
  else if (unit == "m") us_per_unit = 60e6;
  else if (unit == "h") us_per_unit = 3600e6;
  else return std::nullopt;
  const double us = *number * us_per_unit;
  if (us > 1e15) return std::nullopt;
  return std::chrono::microseconds(static_cast<std::int64_t>(std::llround(us)));
}

std::string format_duration(std::chrono::microseconds d) {
  const std::int64_t us = d.count();
  if (us == 0) return "0s";
  if (us % 3600000000 == 0) return std::to_string(us / 3600000000) + "h";
  if (us % 60000000 == 0) return std::to_string(us / 60000000) + "m";
  if (us % 1000000 == 0) return std::to_string(us / 1000000) + "s";
  if (us % 1000 == 0) return std::to_string(us / 1000) + "ms";
  return std::to_string(us) + "us";
}

std::chrono::microseconds duration_at(const nlohmann::json& values, std::string_view path) {
  return *parse_duration(at(values, path).get<std::string>());
}

std::optional<endpoint> parse_endpoint(std::string_view text) {
  endpoint ep;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') return std::nullopt;
    ep.host = std::string(text.substr(1, close - 1));
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos || text.find(':') != colon) return std::nullopt;
    ep.host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
  }
  const auto p = parse_int(port);
  if (ep.host.empty() || !p || *p < 0 || *p > 65535) return std::nullopt;
  ep.port = static_cast<std::uint16_t>(*p);
  return ep;
}

}  // namespace bufpool::config
