"""The paper's recurrent space (issue 28, under construction): so far its architecture format
(arch.py), its cell and its supernet cell as nnabla graphs (cell.py); the language model, the
search and the retraining are to come."""
