// tenantry_guest.h: thin helpers for Tenantry plugins written in C.
//
// Include it after the world's generated header (gen/ in this directory):
//
//     #include "org_resolver.h"       // or "tenant_policy.h"
//     #include "tenantry_guest.h"
//
// The generated header declares the export you implement
// (`exports_tenantry_plugin_resolver_resolve` or `exports_tenantry_plugin_policy_scope`) and
// the raw host imports. This file adds what every plugin needs around them, with the same
// rules and messages as the Rust SDK (crate `tenantry-guest`):
//
// - the contract's id rule (`tenantry_check_id`, `tenantry_validate_org_id`,
//   `tenantry_validate_tenant_id`) and the `{org}`/`{tenant}` name form (`tenantry_db_name`);
// - answers and refusals (`tenantry_target_init`, `tenantry_scope_init`, `tenantry_not_found`,
//   `tenantry_invalid`, `tenantry_denial_*`, `tenantry_props_set`);
// - host imports as C strings (`tenantry_config_get`, `tenantry_log`, `tenantry_now_ms`,
//   `tenantry_http_get`) and
//   the operator-facing config messages (`tenantry_config_missing`, `tenantry_config_invalid`);
// - a small JSON parser for structured config values (`tenantry_json_parse`).
//
// Export your function with TENANTRY_EXPORT_ORG_RESOLVER(fn) or TENANTRY_EXPORT_TENANT_POLICY(fn)
// (at the end of this file) rather than defining the generated export yourself: the wrapper
// zeroes the answer, frees the arguments the component model hands over, and frees the
// call-scoped values below when the call returns.
//
// Memory: by default every call runs in a fresh instance, but with `reuse-instances = true`
// one instance serves many calls, so a plugin must not leak. The rules:
// - strings placed in an answer (`ret`/`err`) must be malloc'ed: the generated post-return
//   hook frees them. tenantry_string*, tenantry_stringf and the setters here do that.
// - values returned by tenantry_config_get, tenantry_cstr, tenantry_db_name and
//   tenantry_json_parse are call-scoped: freed automatically when the call returns (copy
//   what you want to keep). Register your own with tenantry_defer.
// - anything else you malloc, you free.
//
// Plugins have no WASI: printf, files, clocks and randomness from libc are unavailable (the
// build refuses a module that imports them). Use tenantry_log and tenantry_now_ms instead.
// libc's printf family and strtod count as WASI too (they drag in stdio): use
// tenantry_stringf, whose conversions are listed at tenantry_vstringf.
#ifndef TENANTRY_GUEST_H
#define TENANTRY_GUEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BINDINGS_ORG_RESOLVER_H)
typedef org_resolver_string_t tenantry_string_t;
typedef org_resolver_tuple2_string_string_t tenantry_property_t;
#define TENANTRY_WORLD_ORG_RESOLVER 1
#elif defined(__BINDINGS_TENANT_POLICY_H)
typedef tenant_policy_string_t tenantry_string_t;
typedef tenant_policy_tuple2_string_string_t tenantry_property_t;
#define TENANTRY_WORLD_TENANT_POLICY 1
#else
#error "include the world's generated header (org_resolver.h or tenant_policy.h) before tenantry_guest.h"
#endif

#define TENANTRY_API static __attribute__((unused))
#define TENANTRY_PRINTF(f, a) __attribute__((format(printf, f, a)))

/// Longest id accepted: PostgreSQL's identifier limit, and a DNS label's.
#define TENANTRY_MAX_ID_LEN 63

// ---- strings --------------------------------------------------------------------------

TENANTRY_API void *tenantry_defer(void *ptr, void (*drop)(void *));

/// A malloc'ed copy of `len` bytes at `ptr` as a plugin string.
TENANTRY_API tenantry_string_t tenantry_string_n(const void *ptr, size_t len) {
  tenantry_string_t s = {NULL, len};
  if (len > 0) {
    s.ptr = (uint8_t *)malloc(len);
    if (s.ptr == NULL) abort();
    memcpy(s.ptr, ptr, len);
  }
  return s;
}

/// A malloc'ed copy of the NUL-terminated `text`.
TENANTRY_API tenantry_string_t tenantry_string(const char *text) {
  return tenantry_string_n(text, strlen(text));
}

/// A growable byte buffer for building strings piecewise.
typedef struct tenantry_buf_t {
  char *ptr;
  size_t len, cap;
} tenantry_buf_t;

TENANTRY_API void tenantry_buf_put(tenantry_buf_t *b, const void *bytes, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n + 1) cap *= 2;
    b->ptr = (char *)realloc(b->ptr, cap);
    if (b->ptr == NULL) abort();
    b->cap = cap;
  }
  if (n > 0) memcpy(b->ptr + b->len, bytes, n);
  b->len += n;
  b->ptr[b->len] = '\0';
}

TENANTRY_API void tenantry_buf_puts(tenantry_buf_t *b, const char *text) {
  tenantry_buf_put(b, text, strlen(text));
}

/// The buffer's bytes as a plugin string (the buffer gives up ownership).
TENANTRY_API tenantry_string_t tenantry_buf_finish(tenantry_buf_t *b) {
  tenantry_string_t s = {(uint8_t *)b->ptr, b->len};
  if (b->len == 0) {
    free(b->ptr);
    s.ptr = NULL;
  }
  b->ptr = NULL;
  b->len = b->cap = 0;
  return s;
}

TENANTRY_API void tenantry__put_u64(tenantry_buf_t *b, unsigned long long v, unsigned base) {
  char digits[24];
  size_t n = 0;
  do {
    digits[n++] = "0123456789abcdef"[v % base];
    v /= base;
  } while (v > 0);
  while (n > 0) tenantry_buf_put(b, &digits[--n], 1);
}

/// Format into a malloc'ed plugin string. Supports the printf conversions plugins need:
/// %s %.*s %c %d %i %u %x (with l, ll or z) and %%. No floats, widths or padding: libc's own
/// printf family (and strtod) would pull WASI's stdio into the module, which the host refuses.
TENANTRY_API TENANTRY_PRINTF(1, 0) tenantry_string_t tenantry_vstringf(const char *fmt, va_list ap) {
  tenantry_buf_t b = {0};
  for (const char *f = fmt; *f; f++) {
    if (*f != '%') {
      const char *run = f;
      while (f[1] && f[1] != '%') f++;
      tenantry_buf_put(&b, run, (size_t)(f - run) + 1);
      continue;
    }
    f++;
    int precision = -1;
    if (f[0] == '.' && f[1] == '*') {
      precision = va_arg(ap, int);
      f += 2;
    }
    int size = 0;  // 0 int, 1 long, 2 long long, 3 size_t
    if (*f == 'z') { size = 3; f++; }
    else if (f[0] == 'l' && f[1] == 'l') { size = 2; f += 2; }
    else if (*f == 'l') { size = 1; f++; }
    switch (*f) {
      case '%': tenantry_buf_put(&b, "%", 1); break;
      case 'c': { char c = (char)va_arg(ap, int); tenantry_buf_put(&b, &c, 1); break; }
      case 's': {
        const char *s = va_arg(ap, const char *);
        if (s == NULL) s = "(null)";
        size_t n = 0;
        while ((precision < 0 || n < (size_t)precision) && s[n]) n++;
        tenantry_buf_put(&b, s, n);
        break;
      }
      case 'd':
      case 'i': {
        long long v = size == 0 ? va_arg(ap, int) : size == 1 ? va_arg(ap, long)
                    : size == 2 ? va_arg(ap, long long) : (long long)va_arg(ap, size_t);
        unsigned long long u = (unsigned long long)v;
        if (v < 0) { tenantry_buf_put(&b, "-", 1); u = 0 - u; }
        tenantry__put_u64(&b, u, 10);
        break;
      }
      case 'u':
      case 'x': {
        unsigned long long v = size == 0 ? va_arg(ap, unsigned) : size == 1 ? va_arg(ap, unsigned long)
                             : size == 2 ? va_arg(ap, unsigned long long) : va_arg(ap, size_t);
        tenantry__put_u64(&b, v, *f == 'x' ? 16 : 10);
        break;
      }
      case '\0': f--; break;
      default: tenantry_buf_put(&b, f - 1, 2); break;  // unsupported: shown as written
    }
  }
  tenantry_buf_put(&b, "", 0);
  return tenantry_buf_finish(&b);
}

/// A malloc'ed, formatted plugin string (printf syntax, formatted in memory).
TENANTRY_API TENANTRY_PRINTF(1, 2) tenantry_string_t tenantry_stringf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  tenantry_string_t s = tenantry_vstringf(fmt, ap);
  va_end(ap);
  return s;
}

/// A NUL-terminated copy of `s` (for `%s` and the C string functions); call-scoped.
TENANTRY_API char *tenantry_cstr(const tenantry_string_t *s) {
  char *out = (char *)malloc(s->len + 1);
  if (out == NULL) abort();
  if (s->len > 0) memcpy(out, s->ptr, s->len);
  out[s->len] = '\0';
  return (char *)tenantry_defer(out, free);
}

/// Whether `s` equals the NUL-terminated `text`.
TENANTRY_API bool tenantry_string_eq(const tenantry_string_t *s, const char *text) {
  size_t n = strlen(text);
  return s->len == n && (n == 0 || memcmp(s->ptr, text, n) == 0);
}

// ---- call-scoped allocations ------------------------------------------------------------

typedef struct tenantry__deferred_t {
  struct {
    void *ptr;
    void (*drop)(void *);
  } *items;
  size_t len, cap;
} tenantry__deferred_t;

// Weak, so that every file of a plugin that includes this header shares one list.
__attribute__((weak)) tenantry__deferred_t tenantry__deferred;

/// Free `ptr` with `drop` (e.g. `free`) when the current call returns; returns `ptr`.
TENANTRY_API void *tenantry_defer(void *ptr, void (*drop)(void *)) {
  tenantry__deferred_t *d = &tenantry__deferred;
  if (ptr == NULL) return NULL;
  if (d->len == d->cap) {
    d->cap = d->cap ? d->cap * 2 : 16;
    d->items = realloc(d->items, d->cap * sizeof *d->items);
    if (d->items == NULL) abort();
  }
  d->items[d->len].ptr = ptr;
  d->items[d->len].drop = drop;
  d->len++;
  return ptr;
}

/// Free every call-scoped value, newest first (called by the TENANTRY_EXPORT_* wrappers).
TENANTRY_API void tenantry__run_deferred(void) {
  tenantry__deferred_t *d = &tenantry__deferred;
  while (d->len > 0) {
    d->len--;
    d->items[d->len].drop(d->items[d->len].ptr);
  }
}

// ---- ids ------------------------------------------------------------------------------

/// Decode one UTF-8 character at `*i` (advancing it); input is valid UTF-8 (the component
/// model guarantees it for strings).
TENANTRY_API uint32_t tenantry__utf8_next(const uint8_t *p, size_t len, size_t *i) {
  uint8_t c = p[*i];
  size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
  uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < n && *i + k < len; k++) cp = (cp << 6) | (p[*i + k] & 0x3F);
  *i += n;
  return cp;
}

/// Render untrusted input for a message: escaped like Rust's `escape_debug`, at most 40
/// characters, in double quotes.
TENANTRY_API void tenantry__shown(tenantry_buf_t *b, const uint8_t *p, size_t len) {
  tenantry_buf_puts(b, "\"");
  size_t i = 0, chars = 0;
  while (i < len && chars < 40) {
    size_t start = i;
    uint32_t c = tenantry__utf8_next(p, len, &i);
    switch (c) {
      case '\t': tenantry_buf_puts(b, "\\t"); break;
      case '\r': tenantry_buf_puts(b, "\\r"); break;
      case '\n': tenantry_buf_puts(b, "\\n"); break;
      case '\\': tenantry_buf_puts(b, "\\\\"); break;
      case '"': tenantry_buf_puts(b, "\\\""); break;
      case '\'': tenantry_buf_puts(b, "\\'"); break;
      case 0: tenantry_buf_puts(b, "\\0"); break;
      default:
        if (c < 0x20 || c == 0x7F) {
          tenantry_buf_puts(b, "\\u{");
          tenantry__put_u64(b, c, 16);
          tenantry_buf_puts(b, "}");
        } else {
          tenantry_buf_put(b, p + start, i - start);
        }
    }
    chars++;
  }
  if (i < len) tenantry_buf_puts(b, "\xE2\x80\xA6");  // an ellipsis: the id was cut
  tenantry_buf_puts(b, "\"");
}

/// Check `id` against the contract's id rule: 1-63 characters of a-z, 0-9 and '-',
/// starting and ending with a letter or digit. On failure returns false and sets `*message`
/// (malloc'ed) to the host's own explanation, word for word; `kind` ("org", "tenant") names
/// the id in it.
TENANTRY_API bool tenantry_check_id(const char *kind, const uint8_t *id, size_t len,
                                    tenantry_string_t *message) {
  if (len == 0) {
    *message = tenantry_stringf("%s id is empty: pass a non-empty id such as `acme-corp`", kind);
    return false;
  }
  size_t chars = 0;
  for (size_t i = 0; i < len; i++) chars += (id[i] & 0xC0) != 0x80;
  if (chars > TENANTRY_MAX_ID_LEN) {
    *message = tenantry_stringf("%s id is %zu characters long; the limit is %d", kind, chars,
                                TENANTRY_MAX_ID_LEN);
    return false;
  }
  size_t i = 0, position = 0;
  while (i < len) {
    uint32_t c = tenantry__utf8_next(id, len, &i);
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              (c == '-' && position != 0 && position != chars - 1);
    if (!ok) {
      tenantry_buf_t b = {0};
      tenantry_buf_puts(&b, kind);
      tenantry_buf_puts(&b, " id ");
      tenantry__shown(&b, id, len);
      tenantry_string_t tail = tenantry_stringf(
          " is invalid at position %zu: use 1-%d characters of a-z, 0-9 and '-', starting and "
          "ending with a letter or digit",
          position, TENANTRY_MAX_ID_LEN);
      tenantry_buf_put(&b, tail.ptr, tail.len);
      free(tail.ptr);
      *message = tenantry_buf_finish(&b);
      return false;
    }
    position++;
  }
  return true;
}

/// The form of a validated id that goes into `{org}`/`{tenant}` templates: '-' becomes '_'
/// (the host's mapping: `acme-corp` -> `acme_corp`). A call-scoped C string.
TENANTRY_API char *tenantry_db_name(const uint8_t *id, size_t len) {
  char *out = (char *)malloc(len + 1);
  if (out == NULL) abort();
  for (size_t i = 0; i < len; i++) out[i] = id[i] == '-' ? '_' : (char)id[i];
  out[len] = '\0';
  return (char *)tenantry_defer(out, free);
}

// ---- answers and refusals ---------------------------------------------------------------

/// `resolve-error::not-found`.
TENANTRY_API void tenantry_not_found(tenantry_plugin_types_resolve_error_t *err) {
  memset(err, 0, sizeof *err);
  err->tag = TENANTRY_PLUGIN_TYPES_RESOLVE_ERROR_NOT_FOUND;
}

/// `resolve-error::invalid(message)`; takes ownership of the malloc'ed `message`.
TENANTRY_API void tenantry_invalid_s(tenantry_plugin_types_resolve_error_t *err,
                                     tenantry_string_t message) {
  err->tag = TENANTRY_PLUGIN_TYPES_RESOLVE_ERROR_INVALID;
  err->val.invalid = message;
}

/// `resolve-error::invalid`, with a printf-formatted message.
TENANTRY_API TENANTRY_PRINTF(2, 3) void tenantry_invalid(tenantry_plugin_types_resolve_error_t *err,
                                                         const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  tenantry_invalid_s(err, tenantry_vstringf(fmt, ap));
  va_end(ap);
}

/// `resolve-error::unavailable`, with a printf-formatted message (worth retrying).
TENANTRY_API TENANTRY_PRINTF(2, 3) void tenantry_unavailable(
    tenantry_plugin_types_resolve_error_t *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  err->tag = TENANTRY_PLUGIN_TYPES_RESOLVE_ERROR_UNAVAILABLE;
  err->val.unavailable = tenantry_vstringf(fmt, ap);
  va_end(ap);
}

/// `denial::not-found`.
TENANTRY_API void tenantry_denial_not_found(tenantry_plugin_types_denial_t *err) {
  memset(err, 0, sizeof *err);
  err->tag = TENANTRY_PLUGIN_TYPES_DENIAL_NOT_FOUND;
}

/// `denial::invalid(message)`; takes ownership of the malloc'ed `message`.
TENANTRY_API void tenantry_denial_invalid_s(tenantry_plugin_types_denial_t *err,
                                            tenantry_string_t message) {
  err->tag = TENANTRY_PLUGIN_TYPES_DENIAL_INVALID;
  err->val.invalid = message;
}

/// `denial::invalid`, with a printf-formatted message.
TENANTRY_API TENANTRY_PRINTF(2, 3) void tenantry_denial_invalid(tenantry_plugin_types_denial_t *err,
                                                                const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  tenantry_denial_invalid_s(err, tenantry_vstringf(fmt, ap));
  va_end(ap);
}

/// `denial::forbidden`, with a printf-formatted message.
TENANTRY_API TENANTRY_PRINTF(2, 3) void tenantry_denial_forbidden(
    tenantry_plugin_types_denial_t *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  err->tag = TENANTRY_PLUGIN_TYPES_DENIAL_FORBIDDEN;
  err->val.forbidden = tenantry_vstringf(fmt, ap);
  va_end(ap);
}

/// `denial::unavailable`, with a printf-formatted message (worth retrying).
TENANTRY_API TENANTRY_PRINTF(2, 3) void tenantry_denial_unavailable(
    tenantry_plugin_types_denial_t *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  err->tag = TENANTRY_PLUGIN_TYPES_DENIAL_UNAVAILABLE;
  err->val.unavailable = tenantry_vstringf(fmt, ap);
  va_end(ap);
}

/// Check an org id; on failure fill `err` with `invalid(<the host's message>)`.
TENANTRY_API bool tenantry_validate_org_id(const tenantry_string_t *org_id,
                                           tenantry_plugin_types_resolve_error_t *err) {
  tenantry_string_t message;
  if (tenantry_check_id("org", org_id->ptr, org_id->len, &message)) return true;
  tenantry_invalid_s(err, message);
  return false;
}

/// Check a tenant id; on failure fill `err` with `invalid(<the host's message>)`.
TENANTRY_API bool tenantry_validate_tenant_id(const tenantry_string_t *tenant_id,
                                              tenantry_plugin_types_denial_t *err) {
  tenantry_string_t message;
  if (tenantry_check_id("tenant", tenant_id->ptr, tenant_id->len, &message)) return true;
  tenantry_denial_invalid_s(err, message);
  return false;
}

/// The value of property `key` (a label, claim or setting), or NULL.
TENANTRY_API const tenantry_string_t *tenantry_props_get(
    const tenantry_plugin_types_properties_t *props, const char *key) {
  for (size_t i = 0; i < props->len; i++)
    if (tenantry_string_eq(&props->ptr[i].f0, key)) return &props->ptr[i].f1;
  return NULL;
}

/// Set property `key` to `value` (copies of both), replacing an earlier value of the key.
TENANTRY_API void tenantry_props_set_n(tenantry_plugin_types_properties_t *props,
                                       const char *key, size_t key_len, const char *value,
                                       size_t value_len) {
  for (size_t i = 0; i < props->len; i++) {
    tenantry_string_t *k = &props->ptr[i].f0;
    if (k->len == key_len && (key_len == 0 || memcmp(k->ptr, key, key_len) == 0)) {
      free(props->ptr[i].f1.ptr);
      props->ptr[i].f1 = tenantry_string_n(value, value_len);
      return;
    }
  }
  props->ptr = (tenantry_property_t *)realloc(props->ptr, (props->len + 1) * sizeof *props->ptr);
  if (props->ptr == NULL) abort();
  props->ptr[props->len].f0 = tenantry_string_n(key, key_len);
  props->ptr[props->len].f1 = tenantry_string_n(value, value_len);
  props->len++;
}

TENANTRY_API void tenantry_props_set(tenantry_plugin_types_properties_t *props, const char *key,
                                     const char *value) {
  tenantry_props_set_n(props, key, strlen(key), value, strlen(value));
}

TENANTRY_API int tenantry__prop_cmp(const void *a, const void *b) {
  const tenantry_string_t *x = &((const tenantry_property_t *)a)->f0;
  const tenantry_string_t *y = &((const tenantry_property_t *)b)->f0;
  size_t n = x->len < y->len ? x->len : y->len;
  int c = n ? memcmp(x->ptr, y->ptr, n) : 0;
  return c ? c : (x->len > y->len) - (x->len < y->len);
}

/// Sort properties by key (bytewise), e.g. to answer in a stable order.
TENANTRY_API void tenantry_props_sort(tenantry_plugin_types_properties_t *props) {
  if (props->len > 1) qsort(props->ptr, props->len, sizeof *props->ptr, tenantry__prop_cmp);
}

/// Start an org target at `url` (copied): no region, the host's default TTL, no labels.
TENANTRY_API void tenantry_target_init(tenantry_plugin_types_org_target_t *target,
                                       const char *url) {
  memset(target, 0, sizeof *target);
  target->url = tenantry_string(url);
}

/// Start a tenant scope with row isolation, no settings, read-write, default limits.
TENANTRY_API void tenantry_scope_init(tenantry_plugin_types_tenant_scope_t *scope) {
  memset(scope, 0, sizeof *scope);
  scope->isolation.tag = TENANTRY_PLUGIN_TYPES_ISOLATION_ROW;
}

/// The value of the principal's claim `name`, or NULL (also when there is no principal).
TENANTRY_API const tenantry_string_t *tenantry_claim(
    const tenantry_plugin_types_scope_request_t *request, const char *name) {
  if (!request->principal.is_some) return NULL;
  return tenantry_props_get(&request->principal.val.claims, name);
}

// ---- host imports -----------------------------------------------------------------------

typedef enum tenantry_level_t {
  TENANTRY_TRACE = TENANTRY_PLUGIN_LOG_LEVEL_TRACE,
  TENANTRY_DEBUG = TENANTRY_PLUGIN_LOG_LEVEL_DEBUG,
  TENANTRY_INFO = TENANTRY_PLUGIN_LOG_LEVEL_INFO,
  TENANTRY_WARN = TENANTRY_PLUGIN_LOG_LEVEL_WARN,
  TENANTRY_ERROR = TENANTRY_PLUGIN_LOG_LEVEL_ERROR,
} tenantry_level_t;

/// A printf-formatted line in the host's log (capability `log`; dropped when not granted,
/// but the last warning or error still reaches the report if the call traps).
TENANTRY_API TENANTRY_PRINTF(2, 3) void tenantry_log(tenantry_level_t level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  tenantry_string_t line = tenantry_vstringf(fmt, ap);
  va_end(ap);
  tenantry_plugin_log_write((tenantry_plugin_log_level_t)level, &line);
  free(line.ptr);
}

/// This plugin's config value for `key` as a call-scoped C string, or NULL when not set
/// (capability `config`; without the grant the host fails the call with `not granted`).
TENANTRY_API char *tenantry_config_get(const char *key) {
  tenantry_string_t k = {(uint8_t *)key, strlen(key)}, value = {0};
  if (!tenantry_plugin_config_get(&k, &value)) return NULL;
  char *out = tenantry_cstr(&value);
  free(value.ptr);
  return out;
}

/// The operator-facing message for a config key that must be set, as in the Rust SDK.
TENANTRY_API tenantry_string_t tenantry_config_missing(const char *key) {
  return tenantry_stringf("config key `%s` is not set: add it to this plugin's [config] table", key);
}

/// The operator-facing message for a config key with an unusable value. Never quote the
/// value itself: config values routinely carry passwords.
TENANTRY_API TENANTRY_PRINTF(2, 3) tenantry_string_t tenantry_config_invalid(const char *key,
                                                                           const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  tenantry_string_t reason = tenantry_vstringf(fmt, ap);
  va_end(ap);
  tenantry_string_t s =
      tenantry_stringf("config key `%s` is invalid: %.*s", key, (int)reason.len, (char *)reason.ptr);
  free(reason.ptr);
  return s;
}

/// Wall-clock milliseconds since the Unix epoch (capability `clock`).
TENANTRY_API uint64_t tenantry_now_ms(void) { return tenantry_plugin_clock_now_ms(); }

/// GET `url` from a host on the plugin's allowlist (capability `http`). Returns true with the
/// status and the body (a call-scoped C string), or false with `*error` (call-scoped) saying
/// why: not allowlisted, malformed, timed out or too large.
TENANTRY_API bool tenantry_http_get(const char *url, uint16_t *status, char **body, char **error) {
  tenantry_string_t u = {(uint8_t *)url, strlen(url)}, failure = {0};
  tenantry_plugin_http_response_t response;
  memset(&response, 0, sizeof response);
  if (tenantry_plugin_http_get(&u, &response, &failure)) {
    *status = response.status;
    *body = tenantry_cstr(&response.body);
    free(response.body.ptr);
    return true;
  }
  *error = tenantry_cstr(&failure);
  free(failure.ptr);
  return false;
}

// ---- JSON -------------------------------------------------------------------------------
// A small, strict parser (RFC 8259) for structured config values. Strings are unescaped to
// UTF-8 and NUL-terminated; numbers keep whether they were written as integers.

typedef enum tenantry_json_kind_t {
  TENANTRY_JSON_NULL,
  TENANTRY_JSON_BOOL,
  TENANTRY_JSON_NUMBER,
  TENANTRY_JSON_STRING,
  TENANTRY_JSON_ARRAY,
  TENANTRY_JSON_OBJECT,
} tenantry_json_kind_t;

typedef struct tenantry_json_t tenantry_json_t;
struct tenantry_json_t {
  tenantry_json_kind_t kind;
  bool boolean;       // BOOL
  double number;      // NUMBER
  bool integer;       // NUMBER written without fraction or exponent
  char *string;       // STRING (NUL-terminated; `len` bytes)
  size_t len;         // STRING bytes, or ARRAY/OBJECT element count
  tenantry_json_t *items;  // ARRAY elements, OBJECT values
  char **keys;             // OBJECT keys (NUL-terminated)
};

typedef struct tenantry__json_parser_t {
  const char *p, *start, *end;
  int depth;
  char error[128];
} tenantry__json_parser_t;

TENANTRY_API bool tenantry__json_fail(tenantry__json_parser_t *ps, const char *what) {
  if (ps->error[0]) return false;
  size_t line = 1, column = 1;
  for (const char *q = ps->start; q < ps->p && q < ps->end; q++) {
    if (*q == '\n') {
      line++;
      column = 1;
    } else if ((*q & 0xC0) != 0x80) {
      column++;
    }
  }
  tenantry_string_t m = tenantry_stringf("%s at line %zu column %zu", what, line, column);
  size_t n = m.len < sizeof ps->error - 1 ? m.len : sizeof ps->error - 1;
  memcpy(ps->error, m.ptr, n);
  ps->error[n] = '\0';
  free(m.ptr);
  return false;
}

TENANTRY_API void tenantry__json_ws(tenantry__json_parser_t *ps) {
  while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
    ps->p++;
}

TENANTRY_API bool tenantry__json_value(tenantry__json_parser_t *ps, tenantry_json_t *out);

TENANTRY_API int tenantry__hex4(const char *p) {
  int v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else return -1;
  }
  return v;
}

TENANTRY_API bool tenantry__json_string(tenantry__json_parser_t *ps, char **out, size_t *len) {
  ps->p++;  // opening quote
  tenantry_buf_t b = {0};
  tenantry_buf_put(&b, "", 0);
  const char *problem = NULL;
  while (problem == NULL) {
    if (ps->p >= ps->end) {
      problem = "EOF while parsing a string";
      break;
    }
    unsigned char c = (unsigned char)*ps->p;
    if (c == '"') {
      ps->p++;
      *out = b.ptr;
      *len = b.len;
      return true;
    }
    if (c < 0x20) {
      problem = "control character in string";
      break;
    }
    if (c != '\\') {
      tenantry_buf_put(&b, ps->p, 1);
      ps->p++;
      continue;
    }
    if (ps->p + 1 >= ps->end) {
      problem = "EOF while parsing a string";
      break;
    }
    char e = ps->p[1];
    ps->p += 2;
    const char *simple = NULL;
    switch (e) {
      case '"': simple = "\""; break;
      case '\\': simple = "\\"; break;
      case '/': simple = "/"; break;
      case 'b': simple = "\b"; break;
      case 'f': simple = "\f"; break;
      case 'n': simple = "\n"; break;
      case 'r': simple = "\r"; break;
      case 't': simple = "\t"; break;
      case 'u': break;
      default: problem = "invalid escape"; continue;
    }
    if (simple) {
      tenantry_buf_put(&b, simple, 1);
      continue;
    }
    if (ps->end - ps->p < 4 || tenantry__hex4(ps->p) < 0) {
      problem = "invalid \\u escape";
      continue;
    }
    uint32_t cp = (uint32_t)tenantry__hex4(ps->p);
    ps->p += 4;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u' ||
          tenantry__hex4(ps->p + 2) < 0xDC00 || tenantry__hex4(ps->p + 2) > 0xDFFF) {
        problem = "lone leading surrogate in hex escape";
        continue;
      }
      cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)tenantry__hex4(ps->p + 2) - 0xDC00);
      ps->p += 6;
    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
      problem = "lone trailing surrogate in hex escape";
      continue;
    }
    char u[4];
    size_t n;
    if (cp < 0x80) { u[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
    else if (cp < 0x10000) {
      u[0] = (char)(0xE0 | (cp >> 12)); u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
      u[2] = (char)(0x80 | (cp & 0x3F)); n = 3;
    } else {
      u[0] = (char)(0xF0 | (cp >> 18)); u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
      u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F)); n = 4;
    }
    tenantry_buf_put(&b, u, n);
  }
  free(b.ptr);
  return tenantry__json_fail(ps, problem);
}

TENANTRY_API bool tenantry__json_number(tenantry__json_parser_t *ps, tenantry_json_t *out) {
  const char *s = ps->p;
  bool integer = true;
  if (ps->p < ps->end && *ps->p == '-') ps->p++;
  if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') return tenantry__json_fail(ps, "invalid number");
  if (*ps->p == '0') ps->p++;
  else while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') ps->p++;
  if (ps->p < ps->end && *ps->p == '.') {
    integer = false;
    ps->p++;
    if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') return tenantry__json_fail(ps, "invalid number");
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') ps->p++;
  }
  if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
    integer = false;
    ps->p++;
    if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-')) ps->p++;
    if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') return tenantry__json_fail(ps, "invalid number");
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') ps->p++;
  }
  // Integers are exact up to 2^53 (saturating beyond); fractions and exponents are
  // approximated, which is plenty for configuration values.
  const char *q = s;
  bool negative = *q == '-';
  if (negative) q++;
  double value = 0, scale = 1;
  int exponent = 0;
  for (; q < ps->p && *q >= '0' && *q <= '9'; q++) value = value * 10 + (*q - '0');
  if (q < ps->p && *q == '.')
    for (q++; q < ps->p && *q >= '0' && *q <= '9'; q++) value += (*q - '0') * (scale /= 10);
  if (q < ps->p && (*q == 'e' || *q == 'E')) {
    bool minus = *++q == '-';
    if (*q == '-' || *q == '+') q++;
    for (; q < ps->p && *q >= '0' && *q <= '9'; q++) exponent = exponent < 10000 ? exponent * 10 + (*q - '0') : exponent;
    if (minus) exponent = -exponent;
  }
  for (; exponent > 0; exponent--) value *= 10;
  for (; exponent < 0; exponent++) value /= 10;
  out->kind = TENANTRY_JSON_NUMBER;
  out->number = negative ? -value : value;
  out->integer = integer;
  return true;
}

TENANTRY_API bool tenantry__json_literal(tenantry__json_parser_t *ps, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
    return tenantry__json_fail(ps, "expected value");
  ps->p += n;
  return true;
}

/// Free what a parsed value owns (not the value itself).
TENANTRY_API void tenantry__json_clear(tenantry_json_t *v) {
  if (v->kind == TENANTRY_JSON_STRING) free(v->string);
  if (v->kind == TENANTRY_JSON_ARRAY || v->kind == TENANTRY_JSON_OBJECT) {
    for (size_t i = 0; i < v->len; i++) {
      tenantry__json_clear(&v->items[i]);
      if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
  }
  memset(v, 0, sizeof *v);
}

/// Free a tree returned by tenantry_json_parse (it is call-scoped; this frees it earlier).
TENANTRY_API void tenantry_json_free(void *root) {
  tenantry__json_clear((tenantry_json_t *)root);
  free(root);
}

// Parse one value into `out`. On failure `out` owns nothing.
TENANTRY_API bool tenantry__json_value(tenantry__json_parser_t *ps, tenantry_json_t *out) {
  memset(out, 0, sizeof *out);
  tenantry__json_ws(ps);
  if (ps->p >= ps->end) return tenantry__json_fail(ps, "EOF while parsing a value");
  switch (*ps->p) {
    case 'n': out->kind = TENANTRY_JSON_NULL; return tenantry__json_literal(ps, "null");
    case 't': out->kind = TENANTRY_JSON_BOOL; out->boolean = true; return tenantry__json_literal(ps, "true");
    case 'f': out->kind = TENANTRY_JSON_BOOL; return tenantry__json_literal(ps, "false");
    case '"':
      out->kind = TENANTRY_JSON_STRING;
      if (tenantry__json_string(ps, &out->string, &out->len)) return true;
      memset(out, 0, sizeof *out);
      return false;
    case '[':
    case '{': {
      bool object = *ps->p == '{';
      char close = object ? '}' : ']';
      if (++ps->depth > 128) return tenantry__json_fail(ps, "recursion limit exceeded");
      out->kind = object ? TENANTRY_JSON_OBJECT : TENANTRY_JSON_ARRAY;
      ps->p++;
      tenantry__json_ws(ps);
      if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        ps->depth--;
        return true;
      }
      size_t cap = 0;
      const char *problem = NULL;
      while (true) {
        if (out->len == cap) {
          cap = cap ? cap * 2 : 8;
          out->items = (tenantry_json_t *)realloc(out->items, cap * sizeof *out->items);
          if (object) out->keys = (char **)realloc(out->keys, cap * sizeof *out->keys);
          if (out->items == NULL || (object && out->keys == NULL)) abort();
        }
        if (object) {
          tenantry__json_ws(ps);
          if (ps->p >= ps->end) { problem = "EOF while parsing an object"; break; }
          if (*ps->p != '"') { problem = "key must be a string"; break; }
          size_t klen;
          if (!tenantry__json_string(ps, &out->keys[out->len], &klen)) break;
          tenantry__json_ws(ps);
          if (ps->p >= ps->end || *ps->p != ':') {
            free(out->keys[out->len]);
            problem = "expected `:`";
            break;
          }
          ps->p++;
        }
        if (!tenantry__json_value(ps, &out->items[out->len])) {
          if (object) free(out->keys[out->len]);
          break;
        }
        out->len++;
        tenantry__json_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
          ps->p++;
          continue;
        }
        if (ps->p < ps->end && *ps->p == close) {
          ps->p++;
          ps->depth--;
          return true;
        }
        problem = object ? "expected `,` or `}`" : "expected `,` or `]`";
        break;
      }
      tenantry__json_clear(out);
      return problem ? tenantry__json_fail(ps, problem) : false;
    }
    default:
      if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) return tenantry__json_number(ps, out);
      return tenantry__json_fail(ps, "expected value");
  }
}

/// Parse `len` bytes of JSON text. Returns a call-scoped tree, or NULL with `error` (at least
/// 128 bytes) set to a message such as "expected value at line 1 column 2".
TENANTRY_API tenantry_json_t *tenantry_json_parse(const char *text, size_t len, char *error) {
  tenantry__json_parser_t ps = {text, text, text + len, 0, {0}};
  tenantry_json_t *root = (tenantry_json_t *)malloc(sizeof *root);
  if (root == NULL) abort();
  if (tenantry__json_value(&ps, root)) {
    tenantry__json_ws(&ps);
    if (ps.p == ps.end) return (tenantry_json_t *)tenantry_defer(root, tenantry_json_free);
    tenantry__json_fail(&ps, "trailing characters");
    tenantry__json_clear(root);
  }
  free(root);
  memcpy(error, ps.error, sizeof ps.error);
  return NULL;
}

/// Member `key` of an object (the last one when a key repeats, as in most JSON libraries),
/// or NULL (also when `object` is not an object).
TENANTRY_API const tenantry_json_t *tenantry_json_get(const tenantry_json_t *object,
                                                      const char *key) {
  if (object == NULL || object->kind != TENANTRY_JSON_OBJECT) return NULL;
  for (size_t i = object->len; i > 0; i--)
    if (strcmp(object->keys[i - 1], key) == 0) return &object->items[i - 1];
  return NULL;
}

/// Like tenantry_json_get, for a key given as a plugin string.
TENANTRY_API const tenantry_json_t *tenantry_json_get_s(const tenantry_json_t *object,
                                                        const tenantry_string_t *key) {
  if (object == NULL || object->kind != TENANTRY_JSON_OBJECT) return NULL;
  for (size_t i = object->len; i > 0; i--) {
    const char *k = object->keys[i - 1];
    if (strlen(k) == key->len && (key->len == 0 || memcmp(k, key->ptr, key->len) == 0))
      return &object->items[i - 1];
  }
  return NULL;
}

/// Whether `value` is a number that fits a WIT u32 (written as an integer, 0..4294967295).
TENANTRY_API bool tenantry_json_u32(const tenantry_json_t *value, uint32_t *out) {
  if (value->kind != TENANTRY_JSON_NUMBER || !value->integer || value->number < 0 ||
      value->number > 4294967295.0)
    return false;
  *out = (uint32_t)value->number;
  return true;
}

/// A JSON type name for messages ("a string", "an object", ...).
TENANTRY_API const char *tenantry_json_kind_name(const tenantry_json_t *value) {
  switch (value->kind) {
    case TENANTRY_JSON_NULL: return "null";
    case TENANTRY_JSON_BOOL: return "a boolean";
    case TENANTRY_JSON_NUMBER: return "a number";
    case TENANTRY_JSON_STRING: return "a string";
    case TENANTRY_JSON_ARRAY: return "an array";
    case TENANTRY_JSON_OBJECT: return "an object";
  }
  return "a value";
}

// ---- exports --------------------------------------------------------------------------------

#ifdef TENANTRY_WORLD_ORG_RESOLVER
/// Export `fn` as the org resolver. `fn` has the signature
///   bool fn(const tenantry_string_t *org_id, tenantry_plugin_types_org_target_t *ret,
///           tenantry_plugin_types_resolve_error_t *err)
/// and returns true with `*ret` filled, or false with `*err` filled. Both start zeroed; the
/// argument and every call-scoped value are freed after `fn` returns.
#define TENANTRY_EXPORT_ORG_RESOLVER(fn)                                                    \
  bool exports_tenantry_plugin_resolver_resolve(org_resolver_string_t *org_id,             \
                                                tenantry_plugin_types_org_target_t *ret,   \
                                                tenantry_plugin_types_resolve_error_t *err) { \
    memset(ret, 0, sizeof *ret);                                                            \
    memset(err, 0, sizeof *err);                                                            \
    bool ok = fn(org_id, ret, err);                                                         \
    if (ok) tenantry_plugin_types_resolve_error_free(err);                                  \
    else tenantry_plugin_types_org_target_free(ret);                                        \
    org_resolver_string_free(org_id);                                                       \
    tenantry__run_deferred();                                                               \
    return ok;                                                                              \
  }
#endif

#ifdef TENANTRY_WORLD_TENANT_POLICY
/// Export `fn` as the tenant policy. `fn` has the signature
///   bool fn(const tenantry_plugin_types_scope_request_t *request,
///           tenantry_plugin_types_tenant_scope_t *ret, tenantry_plugin_types_denial_t *err)
/// and returns true with `*ret` filled (row isolation to start with), or false with `*err`
/// filled. The request and every call-scoped value are freed after `fn` returns.
#define TENANTRY_EXPORT_TENANT_POLICY(fn)                                                    \
  bool exports_tenantry_plugin_policy_scope(tenantry_plugin_types_scope_request_t *request, \
                                            tenantry_plugin_types_tenant_scope_t *ret,       \
                                            tenantry_plugin_types_denial_t *err) {           \
    tenantry_scope_init(ret);                                                                \
    memset(err, 0, sizeof *err);                                                             \
    bool ok = fn(request, ret, err);                                                         \
    if (ok) tenantry_plugin_types_denial_free(err);                                          \
    else tenantry_plugin_types_tenant_scope_free(ret);                                       \
    tenantry_plugin_types_scope_request_free(request);                                       \
    tenantry__run_deferred();                                                                \
    return ok;                                                                               \
  }
#endif

#endif  // TENANTRY_GUEST_H
