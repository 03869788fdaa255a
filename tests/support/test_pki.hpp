// Certificates for the TLS tests, made at run time with OpenSSL (no key is kept in the tree): a CA, a
// server certificate it signs (CN localhost, SAN DNS:localhost and IP:127.0.0.1, ECDSA P-256), a
// client certificate it signs, and a second CA with a client certificate of its own (the "wrong CA").
// Written once per process as PEM files into a fresh directory under $TMPDIR, removed at exit.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace bufpool::test {

struct pki_files {
  std::string dir;
  std::string ca_cert;
  std::string server_cert, server_key;  // signed by ca
  std::string rsa_server_cert, rsa_server_key;  // RSA 2048, signed by ca
  std::string client_cert, client_key;  // signed by ca
  std::string other_ca_cert;
  std::string other_client_cert, other_client_key;  // signed by other_ca
  std::string other_server_cert, other_server_key;  // signed by other_ca (a reload's new certificate)
};

namespace pki_detail {

struct key_free {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct x509_free {
  void operator()(X509* x) const { X509_free(x); }
};
using key_ptr = std::unique_ptr<EVP_PKEY, key_free>;
using x509_ptr = std::unique_ptr<X509, x509_free>;

inline void add_ext(X509* x, X509V3_CTX* ctx, int nid, const char* value) {
  X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, ctx, nid, value);
  if (e == nullptr) throw std::runtime_error("test pki: extension");
  X509_add_ext(x, e, -1);
  X509_EXTENSION_free(e);
}

// A certificate for `key` named `cn`, signed by issuer (or self-signed when issuer is null).
inline x509_ptr make_cert(EVP_PKEY* key, const char* cn, bool ca, X509* issuer, EVP_PKEY* issuer_key, long serial) {
  x509_ptr x(X509_new());
  X509_set_version(x.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), 30L * 86400);
  X509_set_pubkey(x.get(), key);
  X509_NAME* name = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
  X509_set_issuer_name(x.get(), issuer != nullptr ? X509_get_subject_name(issuer) : name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer != nullptr ? issuer : x.get(), x.get(), nullptr, nullptr, 0);
  add_ext(x.get(), &ctx, NID_subject_key_identifier, "hash");
  if (ca) {
    add_ext(x.get(), &ctx, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(x.get(), &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(x.get(), &ctx, NID_basic_constraints, "CA:FALSE");
    add_ext(x.get(), &ctx, NID_authority_key_identifier, "keyid:always");
    add_ext(x.get(), &ctx, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
    add_ext(x.get(), &ctx, NID_ext_key_usage, "serverAuth,clientAuth");
  }
  if (X509_sign(x.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256()) == 0)
    throw std::runtime_error("test pki: sign");
  return x;
}

inline void write_cert(const std::string& path, X509* x) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr || PEM_write_X509(f, x) != 1) throw std::runtime_error("test pki: write " + path);
  std::fclose(f);
}
inline void write_key(const std::string& path, EVP_PKEY* k) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr || PEM_write_PrivateKey(f, k, nullptr, nullptr, 0, nullptr, nullptr) != 1)
    throw std::runtime_error("test pki: write " + path);
  std::fclose(f);
}

inline pki_files make() {
  pki_files p;
  std::string tmpl = (std::filesystem::temp_directory_path() / "bufpool-pki-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("test pki: mkdtemp");
  p.dir = tmpl;
  auto path = [&](const char* n) { return p.dir + "/" + n; };
  key_ptr ca_key(EVP_EC_gen("P-256")), other_ca_key(EVP_EC_gen("P-256"));
  x509_ptr ca = make_cert(ca_key.get(), "bufpool test CA", true, nullptr, nullptr, 1);
  x509_ptr other_ca = make_cert(other_ca_key.get(), "bufpool other test CA", true, nullptr, nullptr, 2);
  key_ptr server_key(EVP_EC_gen("P-256")), client_key(EVP_EC_gen("P-256")), other_client_key(EVP_EC_gen("P-256")),
      other_server_key(EVP_EC_gen("P-256")), rsa_key(EVP_RSA_gen(2048));
  x509_ptr server = make_cert(server_key.get(), "localhost", false, ca.get(), ca_key.get(), 10);
  x509_ptr rsa_server = make_cert(rsa_key.get(), "localhost", false, ca.get(), ca_key.get(), 11);
  x509_ptr client = make_cert(client_key.get(), "bufpool test client", false, ca.get(), ca_key.get(), 12);
  x509_ptr other_client =
      make_cert(other_client_key.get(), "bufpool other client", false, other_ca.get(), other_ca_key.get(), 13);
  x509_ptr other_server = make_cert(other_server_key.get(), "localhost", false, other_ca.get(), other_ca_key.get(), 14);
  write_cert(p.ca_cert = path("ca.pem"), ca.get());
  write_cert(p.other_ca_cert = path("other-ca.pem"), other_ca.get());
  write_cert(p.server_cert = path("server.pem"), server.get());
  write_key(p.server_key = path("server.key"), server_key.get());
  write_cert(p.rsa_server_cert = path("rsa-server.pem"), rsa_server.get());
  write_key(p.rsa_server_key = path("rsa-server.key"), rsa_key.get());
  write_cert(p.client_cert = path("client.pem"), client.get());
  write_key(p.client_key = path("client.key"), client_key.get());
  write_cert(p.other_client_cert = path("other-client.pem"), other_client.get());
  write_key(p.other_client_key = path("other-client.key"), other_client_key.get());
  write_cert(p.other_server_cert = path("other-server.pem"), other_server.get());
  write_key(p.other_server_key = path("other-server.key"), other_server_key.get());
  return p;
}

struct holder {
  pki_files files = make();
  ~holder() {
    std::error_code ec;
    std::filesystem::remove_all(files.dir, ec);
  }
};

}  // namespace pki_detail

/// The process's test certificates (made on first use).
inline const pki_files& test_pki() {
  static const pki_detail::holder h;
  return h.files;
}

}  // namespace bufpool::test
