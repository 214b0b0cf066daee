# Mutant: a history reset (a snapshot installed) does not overtake the cursors, so a watcher that had read everything goes on past the entries the snapshot stands for.
# Applied to a copy of the tree by scripts/sim-teeth.sh; never to the real one.
p='src/watch/history.c'; s=open(p).read()
o='''    h->first_seq++; /* the gap that overtakes every cursor */'''
assert o in s; s=s.replace(o,''); open(p,'w').write(s)
