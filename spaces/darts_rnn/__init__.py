"""The paper's recurrent space (issue 28, under construction): so far its architecture format
(arch.py) and its cell as nnabla graphs (cell.py); the supernet and the language model are to come."""
