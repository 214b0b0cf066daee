# Mutant: serve a read index without the quorum heartbeat round.
# Applied to a copy of the tree by scripts/sim-teeth.sh; never to the real one.
p='src/raft/readindex.c'; s=open(p).read()
o='''    if (ready && (single_voter(r) || quorum_with(r, from, term))) {'''
assert o in s; s=s.replace(o,'''    if (ready && (true || quorum_with(r, from, term))) {'''); open(p,'w').write(s)
