"""nbgrader settings of the course.

Instructor notebooks (with solutions and hidden tests) live in ``solutions/``, the
generated student notebooks in ``exercises/``: nbgrader's source and release
directories. The repository keeps them flat (``solutions/01_episodes.ipynb``); the
``mlcourse exercises`` and ``mlcourse grade`` commands stage each notebook into an
nbgrader course folder (``solutions/<name>/<name>.ipynb``) that uses this file as is.
"""
import os

c = get_config()  # noqa: F821 (provided by nbgrader)

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(c.CourseDirectory.root, "gradebook.db")

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# A cell that runs longer than this is stopped and its tests score 0.
c.Execute.timeout = 300
c.Execute.interrupt_on_timeout = True
c.Execute.extra_arguments = []
