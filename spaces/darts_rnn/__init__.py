"""The paper's recurrent space (issue 28, under construction): so far its architecture format
(arch.py), its cell and its supernet cell (cell.py) and the language model around the cell with
its loss (network.py), as nnabla graphs; the search and the retraining are to come."""
