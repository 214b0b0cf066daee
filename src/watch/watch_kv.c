/* The watch history and hub fed from src/kv's change observer (watch.h,
 * "the history and the map"). The daemon (src/node/watch.c) and the
 * simulator (tests/sim/watch.c) feed theirs through this, so both record
 * the same events. Pure. */
#include "watch/watch.h"

#include "kv/kv.h"

int watch_feed_kv_event(struct watch_history *h, struct watch_hub *hub,
                        uint64_t index, const struct kv_event *ev)
{
    const struct kv_meta *m = &ev->meta;
    struct watch_event we = {.index = index,
                             .type = ev->type == KV_EV_PUT ? WATCH_PUT
                                                           : WATCH_DELETE,
                             .key = m->key,
                             .klen = m->klen,
                             .val = m->val,
                             .vlen = m->vlen,
                             .create_index = m->create_index,
                             .mod_index = m->mod_index,
                             .version = m->version,
                             .lease = m->lease};
    int rv = watch_history_append(h, &we);
    watch_hub_changed(hub, m->key, m->klen);
    return rv;
}
