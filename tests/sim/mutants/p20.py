# Mutant: the byte bound on the log kept behind a snapshot is measured back from the last applied entry, not from the snapshot, so compaction forgets applied entries the snapshot does not cover.
# Applied to a copy of the tree by scripts/sim-teeth.sh; never to the real one.
p='src/raft/raft.c'; s=open(p).read()
o='''    for (uint64_t i = index; i > to; i--) {'''
assert o in s; s=s.replace(o,'''    for (uint64_t i = l->applied; i > to; i--) {''')
open(p,'w').write(s)
