#include "tls/context.hpp"

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <fstream>
#include <system_error>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include <bufpool/config/config.hpp>

namespace bufpool::server::tls {

std::string last_error() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "no reason given" : out;
}

namespace {

[[noreturn]] void fail(const std::string& prefix, const std::string& key, const std::string& file,
                       const std::string& why) {
  ERR_clear_error();
  throw config::error({"config: " + prefix + key + " = \"" + file + "\": " + why});
}

// A file that cannot be opened is named with the system's reason, not OpenSSL's (which says less).
void check_readable(const std::string& prefix, const std::string& key, const std::string& file) {
  std::ifstream f(file);
  if (!f) fail(prefix, key, file, std::string("cannot open: ") + std::strerror(errno));
}

// ALPN: the first of ours the client offers (h2, where the listener speaks it, before http/1.1); else
// no protocol is agreed (as nginx does), and the client may go on with HTTP/1.1 or give up.
constexpr std::string_view alpn_h1 = "\x08http/1.1";
constexpr std::string_view alpn_h2_h1 = "\x02h2\x08http/1.1";
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned inlen,
                void* arg) {
  const auto* ours = static_cast<const std::string_view*>(arg);
  unsigned char* chosen = nullptr;
  if (SSL_select_next_proto(&chosen, outlen, reinterpret_cast<const unsigned char*>(ours->data()),
                            static_cast<unsigned>(ours->size()), in, inlen) == OPENSSL_NPN_NEGOTIATED) {
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

// Where an SSL_CTX keeps its listener's ticket keys.
int keys_index() {
  static const int i = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return i;
}

// OpenSSL's ticket callback (SSL_CTX_set_tlsext_ticket_key_evp_cb): AES-256-CBC and HMAC-SHA256 with
// the listener's keys. enc: a new ticket under the current key; else the key the ticket names, 2 when
// it is the previous one (OpenSSL issues a new ticket), 0 when it is gone (a full handshake).
int ticket_key_cb(SSL* ssl, unsigned char* name, unsigned char* iv, EVP_CIPHER_CTX* cctx, EVP_MAC_CTX* hctx, int enc) {
  const auto* keys = static_cast<const ticket_keys*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), keys_index()));
  if (keys == nullptr) return -1;
  ticket_keys::key k;
  int found = 1;
  if (enc != 0) {
    k = keys->current();
    if (RAND_bytes(iv, 16) != 1) return -1;
    std::memcpy(name, k.name, sizeof k.name);
  } else {
    found = keys->find(name, k);
    if (found == 0) return 0;
  }
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof k.hmac),
                         OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_construct_end()};
  if (EVP_MAC_CTX_set_params(hctx, params) != 1) return -1;
  const int ok = enc != 0 ? EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), nullptr, k.aes, iv)
                          : EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), nullptr, k.aes, iv);
  OPENSSL_cleanse(&k, sizeof k);
  return ok == 1 ? found : -1;
}

}  // namespace

ticket_keys::ticket_keys(std::chrono::microseconds lifetime)
    : lifetime_(lifetime), current_(make()), made_(std::chrono::steady_clock::now()) {}

ticket_keys::key ticket_keys::make() {
  key k;
  if (RAND_bytes(k.name, sizeof k.name) != 1 || RAND_bytes(k.aes, sizeof k.aes) != 1 ||
      RAND_bytes(k.hmac, sizeof k.hmac) != 1)
    throw std::runtime_error("tls: no random bytes for a ticket key: " + last_error());
  return k;
}

bool ticket_keys::rotate_if_due(std::chrono::steady_clock::time_point now) {
  {
    std::lock_guard lk(mu_);
    if (now - made_ < lifetime_) return false;
  }
  key fresh;
  try {
    fresh = make();
  } catch (const std::exception&) {
    return false;  // the old key stays; the next check tries again
  }
  std::lock_guard lk(mu_);
  previous_ = current_;
  has_previous_ = true;
  current_ = fresh;
  made_ = now;
  ++rotations_;
  OPENSSL_cleanse(&fresh, sizeof fresh);
  return true;
}

std::uint64_t ticket_keys::rotations() const noexcept {
  std::lock_guard lk(mu_);
  return rotations_;
}

ticket_keys::key ticket_keys::current() const {
  std::lock_guard lk(mu_);
  return current_;
}

int ticket_keys::find(const unsigned char* name, key& out) const {
  std::lock_guard lk(mu_);
  if (std::memcmp(name, current_.name, sizeof current_.name) == 0) {
    out = current_;
    return 1;
  }
  if (has_previous_ && std::memcmp(name, previous_.name, sizeof previous_.name) == 0) {
    out = previous_;
    return 2;
  }
  return 0;
}

context::context(const settings& s, const std::string& prefix, std::shared_ptr<ticket_keys> keys)
    : keys_(std::move(keys)) {
  ERR_clear_error();
  ctx_ = SSL_CTX_new(TLS_server_method());
  if (ctx_ == nullptr) throw std::runtime_error("tls: SSL_CTX_new: " + last_error());
  try {
    SSL_CTX_set_min_proto_version(ctx_, s.min_version == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION);
    // No renegotiation, no compression, the server's cipher order; OpenSSL's own record buffers are
    // freed whenever they are empty (an idle connection keeps none).
    SSL_CTX_set_options(ctx_, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx_, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_max_early_data(ctx_, 0);  // no 0-RTT
    if (!s.ciphers.empty() && SSL_CTX_set_cipher_list(ctx_, s.ciphers.c_str()) != 1)
      fail(prefix, "ciphers", s.ciphers, "not a cipher list OpenSSL accepts (" + last_error() + ")");
    check_readable(prefix, "certificate", s.certificate);
    if (SSL_CTX_use_certificate_chain_file(ctx_, s.certificate.c_str()) != 1)
      fail(prefix, "certificate", s.certificate, "not a PEM certificate chain (" + last_error() + ")");
    const std::string key = s.key.empty() ? s.certificate : s.key;
    check_readable(prefix, "key", key);
    EVP_PKEY* pkey = nullptr;
    if (BIO* in = BIO_new_file(key.c_str(), "r")) {
      pkey = PEM_read_bio_PrivateKey(in, nullptr, nullptr, nullptr);
      BIO_free(in);
    }
    if (pkey == nullptr) fail(prefix, "key", key, "not a PEM private key (" + last_error() + ")");
    const int used = SSL_CTX_use_PrivateKey(ctx_, pkey);
    EVP_PKEY_free(pkey);
    if (used != 1 || SSL_CTX_check_private_key(ctx_) != 1)
      fail(prefix, "key", key, "does not match the certificate " + s.certificate + " (" + last_error() + ")");
    if (s.client_auth != "none") {
      if (s.client_ca.empty())
        throw config::error({"config: " + prefix + "client_ca: a CA file is required when " + prefix +
                             "client_auth is \"" + s.client_auth + "\""});
      check_readable(prefix, "client_ca", s.client_ca);
      if (SSL_CTX_load_verify_locations(ctx_, s.client_ca.c_str(), nullptr) != 1)
        fail(prefix, "client_ca", s.client_ca, "not a PEM CA file (" + last_error() + ")");
      if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(s.client_ca.c_str()))
        SSL_CTX_set_client_CA_list(ctx_, names);
      SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER | (s.client_auth == "require" ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                         nullptr);
    }
    // Resumption: OpenSSL's server-side session cache (per context: a reload starts a new one) and
    // tickets under the listener's rotating keys. A session lives two key lifetimes, as a ticket does.
    // The id context ties cached sessions to this listener.
    static const unsigned char sid[] = "bufpool-server";
    SSL_CTX_set_session_id_context(ctx_, sid, sizeof sid - 1);
    SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx_, 20480);
    const auto life_s = std::chrono::duration_cast<std::chrono::seconds>(2 * keys_->lifetime()).count();
    SSL_CTX_set_timeout(ctx_, static_cast<long>(std::max<std::int64_t>(life_s, 1)));
    if (SSL_CTX_set_ex_data(ctx_, keys_index(), keys_.get()) != 1 ||
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx_, ticket_key_cb) != 1)
      throw std::runtime_error("tls: cannot set the session ticket keys: " + last_error());
    SSL_CTX_set_alpn_select_cb(ctx_, select_alpn,
                               const_cast<std::string_view*>(s.alpn_h2 ? &alpn_h2_h1 : &alpn_h1));
  } catch (...) {
    SSL_CTX_free(ctx_);
    throw;
  }
}

context::~context() { SSL_CTX_free(ctx_); }

ssl_st* context::new_ssl() const noexcept { return SSL_new(ctx_); }

holder::holder(settings s, std::string prefix)
    : settings_(std::move(s)), prefix_(std::move(prefix)),
      keys_(std::make_shared<ticket_keys>(settings_.ticket_key_lifetime)) {
  current_ = std::make_shared<const context>(settings_, prefix_, keys_);
  stamps_ = stamps();
}

std::shared_ptr<const context> holder::current() const {
  std::lock_guard lk(mu_);
  return current_;
}

bool holder::reload(std::string& why) {
  // The files' times before they are read: a change made while they load is seen by the next check.
  auto now = stamps();
  try {
    auto fresh = std::make_shared<const context>(settings_, prefix_, keys_);
    std::lock_guard lk(mu_);
    current_ = std::move(fresh);
    stamps_ = std::move(now);
    return true;
  } catch (const std::exception& e) {
    why = e.what();
    std::lock_guard lk(mu_);
    stamps_ = std::move(now);  // logged once per change, not once per check
    return false;
  }
}

std::vector<std::filesystem::file_time_type> holder::stamps() const {
  std::vector<std::filesystem::file_time_type> out;
  for (const std::string* f : {&settings_.certificate, &settings_.key, &settings_.client_ca}) {
    std::error_code ec;
    out.push_back(f->empty() ? std::filesystem::file_time_type{} : std::filesystem::last_write_time(*f, ec));
  }
  return out;
}

bool holder::files_changed() const {
  const auto now = stamps();
  std::lock_guard lk(mu_);
  return now != stamps_;
}

}  // namespace bufpool::server::tls
