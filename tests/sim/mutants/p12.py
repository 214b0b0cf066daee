# Mutant: a Raft id that ignores the incarnation (a wiped node comes back under its old id).
# Applied to a copy of the tree by scripts/sim-teeth.sh; never to the real one.
p='src/common/member_id.c'; s=open(p).read()
o='''    for (int i = 0; incarnation != 0 && i < 8; i++) {'''
assert o in s; s=s.replace(o,'''    incarnation = 0;
    for (int i = 0; incarnation != 0 && i < 8; i++) {'''); open(p,'w').write(s)
