"""Rolling hosts safely: the cluster-wide run lock, the suspension of scaling processes that would fight a roll, and
the journal that lets an interrupted roll continue where it stopped."""
