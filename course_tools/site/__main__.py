import sys

from course_tools.site.build import main

sys.exit(main())
