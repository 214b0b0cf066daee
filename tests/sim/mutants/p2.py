# Mutant: send votes (and vote requests) before the vote is durable.
# Applied to a copy of the tree by scripts/sim-teeth.sh; never to the real one.
p='src/raft/election.c'; s=open(p).read()
o='''        raft__send_after(r, resp); /* the vote must be durable first */'''
assert o in s; s=s.replace(o,''); 
o='''        if (!pre)
            raft__send_after(r, m); /* our own vote must be durable */'''
assert o in s; s=s.replace(o,''); open(p,'w').write(s)
p='src/raft/ready.c'; s=open(p).read()
o='''(vote_changed && !is_termless(r->out[i].type))'''
assert o in s; s=s.replace(o,'''(0 && vote_changed)'''); open(p,'w').write(s)
