# Mutant: a watch resumed from an id (Last-Event-ID) starts with the entry at that id, not after it (the client sees that entry twice).
# Applied to a copy of the tree by scripts/sim-teeth.sh; never to the real one.
p='src/watch/history.c'; s=open(p).read()
o='''    c->index = after;
    c->after = after;
    c->seq = h->first_seq + first_after(h, after);'''
assert o in s; s=s.replace(o,'''    c->index = after;
    c->after = after ? after - 1 : 0;
    c->seq = h->first_seq + first_after(h, c->after);'''); open(p,'w').write(s)
