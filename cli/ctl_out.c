/* craftctl's output: JSON printing, raw bytes, and the bytes of fields that
 * craftd sends as "name" (UTF-8) or "name_b64" (base64, for other bytes). */
#include "ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int b64_val(char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+')
        return 62;
    if (ch == '/')
        return 63;
    return -1;
}

/* Standard base64 with padding: a new buffer, or NULL if s is not that. */
static char *b64_decode(const char *s, size_t len, size_t *out_len)
{
    if (len % 4 != 0)
        return NULL;
    char *out = malloc(len / 4 * 3 + 1);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            if (s[i + k] == '=' && i + 4 == len && k >= 2) {
                v[k] = 0;
                pad++;
            } else if (pad > 0 || (v[k] = b64_val(s[i + k])) < 0) {
                free(out);
                return NULL;
            }
        }
        unsigned g = (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 |
                     (unsigned)v[3];
        out[o++] = (char)(g >> 16);
        if (pad < 2)
            out[o++] = (char)(g >> 8);
        if (pad < 1)
            out[o++] = (char)g;
    }
    out[o] = 0;
    *out_len = o;
    return out;
}

char *ctl_json_bytes(json_t *obj, const char *name, size_t *len)
{
    json_t *v = json_object_get(obj, name);
    if (json_is_string(v)) {
        *len = json_string_length(v);
        char *out = malloc(*len + 1);
        if (out != NULL) {
            memcpy(out, json_string_value(v), *len);
            out[*len] = 0;
        }
        return out;
    }
    char b64[64];
    snprintf(b64, sizeof b64, "%s_b64", name);
    v = json_object_get(obj, b64);
    if (!json_is_string(v))
        return NULL;
    return b64_decode(json_string_value(v), json_string_length(v), len);
}

void ctl_print_json(json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    if (s != NULL) {
        fputs(s, stdout);
        fputc('\n', stdout);
        free(s);
    }
}

void ctl_write(const void *p, size_t len)
{
    fwrite(p, 1, len, stdout);
}

json_t *ctl_parse(const struct ctl_resp *r)
{
    json_error_t err;
    json_t *j = json_loadb(r->body, r->len, 0, &err);
    if (j == NULL)
        fprintf(stderr, "craftctl: %s answered something that is not JSON: %s\n", r->endpoint,
                err.text);
    return j;
}
